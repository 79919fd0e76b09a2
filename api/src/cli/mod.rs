//! One module per subcommand of `oacis`.

pub mod erase;
pub mod export;
pub mod keys;
pub mod rebuild;
pub mod transfer;
pub mod verify;
