//! Everything about tenants as tenants: slugs, the management rows, which
//! tenant a request is for, connections bound to one tenant, provisioning,
//! and the template every tenant schema is built from.

pub mod changes;
pub mod conn;
pub mod db_role;
pub mod doctor;
pub mod fleet;
pub mod lifecycle;
pub mod provision;
pub mod resolver;
pub mod schema_pool;
pub mod slug;
pub mod template;
pub mod tenants;
pub mod transfer;

pub use slug::TenantSlug;
