//! Strata's integration tests: one binary, every test on its own database.

mod common;

mod access;
mod doctor;
mod embedded;
mod fleet;
mod http;
mod isolation;
mod lifecycle;
mod members;
mod projects;
mod provisioning;
mod scale;
mod sessions;
mod sign_in;
mod task_pages;
mod tenant_cache;
mod transfer;
