//! The OACIS server and command-line tool as a library: the `oacis` binary (`main.rs`) is a
//! thin shell over it, and benchmarks drive the same code paths (the import, the command
//! path, the GraphQL schema) without a process in between.
//!
//! Modules: `server` (HTTP, first start), `graphql` (schema and resolvers), `command` (the one
//! command path), `access` (callers, scopes, masking), `auth` (passwords, tokens, throttling),
//! `transfer` (customer import and export), `erasure`, `backups` (backups while serving), `cli`
//! (subcommands), `progress`.

pub mod access;
pub mod approvals;
pub mod attachments;
pub mod auth;
pub mod backups;
pub mod cli;
pub mod command;
pub mod erasure;
pub mod graphql;
pub mod live;
pub mod progress;
pub mod server;
pub mod transfer;
