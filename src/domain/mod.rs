//! The logic resolvers call, independent of GraphQL. Models return diesel's
//! `QueryResult`; rules that produce client errors return `AppResult`.

pub mod api_keys;
pub mod audit;
pub mod invitations;
pub mod permissions;
pub mod plans;
pub mod projects;
pub mod roles;
pub mod sessions;
pub mod tasks;
pub mod teams;
pub mod users;
