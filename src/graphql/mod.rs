//! The GraphQL API: one module per domain, merged into one schema.

pub mod access;
pub mod api_keys;
pub mod audit;
pub mod context;
pub mod invitations;
pub mod loaders;
pub mod pagination;
pub mod parsed;
pub mod projects;
pub mod response_json;
pub mod sessions;
pub mod task_page;
pub mod tasks;
pub mod teams;
pub mod tenants;
pub mod users;

use async_graphql::{EmptySubscription, MergedObject, Schema};

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (list fields count `first` times their children).
pub const MAX_COMPLEXITY: usize = 20_000;

/// Every query field.
#[derive(MergedObject, Default)]
pub struct Query(
    tenants::TenantsQuery,
    users::UsersQuery,
    sessions::SessionsQuery,
    access::AccessQuery,
    api_keys::ApiKeysQuery,
    teams::TeamsQuery,
    invitations::InvitationsQuery,
    audit::AuditQuery,
    projects::ProjectsQuery,
    tasks::TasksQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    tenants::TenantsMutation,
    sessions::SessionsMutation,
    users::UsersMutation,
    access::AccessMutation,
    api_keys::ApiKeysMutation,
    teams::TeamsMutation,
    invitations::InvitationsMutation,
    projects::ProjectsMutation,
    tasks::TasksMutation,
);

/// The schema type.
pub type StrataSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema, with no context data: each request brings its own
/// [`context::RequestCtx`].
pub fn schema() -> StrataSchema {
    // No extensions: task pages are answered without the executor's
    // per-field hooks (`task_page`), which an extension would rely on.
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema().sdl()
}
