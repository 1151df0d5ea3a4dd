//! The logic resolvers call, independent of GraphQL. Models return diesel's
//! `QueryResult`; rules that produce client errors return `AppResult`.

pub mod plans;
pub mod projects;
pub mod tasks;
pub mod users;
