//! One module per subcommand of `oacis`.

pub mod export;
pub mod rebuild;
pub mod verify;
