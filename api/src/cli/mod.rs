//! One module per subcommand of `oacis`.

pub mod backup;
pub mod erase;
pub mod export;
pub mod keys;
pub mod migrate;
pub mod output;
pub mod proof;
pub mod rebuild;
pub mod transfer;
pub mod verify;
