//! Strata: a multi-tenant GraphQL API server where every tenant lives in its
//! own PostgreSQL schema, `tenant_<slug>`, and a `management` schema holds
//! plans, tenants and the migration ledger.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod telemetry;
pub mod tenancy;

pub use app::App;
pub use http::router as build_router;
