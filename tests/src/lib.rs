//! End-to-end tests that start the real `oacis` server on a temporary data folder and drive
//! it over HTTP and the CLI. They arrive with the server; the CLI's own tests live in
//! `api/tests/`.
