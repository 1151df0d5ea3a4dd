//! Strata's integration tests: one binary, every test on its own database.

mod common;

mod embedded;
mod http;
mod isolation;
mod projects;
mod provisioning;
mod sign_in;
