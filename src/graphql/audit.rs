//! The audit trail of access changes, and the plan's usage.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::audit::{self, AuditEvent};
use crate::domain::{projects, users};
use crate::graphql::context::ContextExt as _;
use crate::graphql::pagination::{Cursor, after_id, connection, page_size};
use crate::in_scope;

#[Object]
impl AuditEvent {
    /// Event id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.at
    }
    /// `user`, `admin` (the platform admin) or `api_key`.
    async fn actor_kind(&self) -> &str {
        &self.actor_kind
    }
    /// The acting user (an API key's owner); null for the platform admin.
    async fn actor_user_id(&self) -> Option<ID> {
        self.actor_user_id.map(|id| ID(id.to_string()))
    }
    /// What happened, e.g. `role.assigned`.
    async fn action(&self) -> &str {
        &self.action
    }
    /// Kind of thing changed: `user`, `role`, `team`, `session`, `api_key`, `invitation`.
    async fn target_type(&self) -> Option<&str> {
        self.target_type.as_deref()
    }
    /// Its id.
    async fn target_id(&self) -> Option<ID> {
        self.target_id.map(|id| ID(id.to_string()))
    }
    /// More about it (a role key, an email ...).
    async fn detail(&self) -> &str {
        &self.detail
    }
}

/// What the tenant uses of its plan.
#[derive(SimpleObject)]
pub struct Usage {
    /// The plan's code.
    pub plan: String,
    /// Enabled users.
    pub seats_used: i64,
    /// Seats the plan allows; null: unlimited.
    pub seats_limit: Option<i32>,
    /// Projects.
    pub projects_used: i64,
    /// Projects the plan allows; null: unlimited.
    pub projects_limit: Option<i32>,
}

/// The audit trail and usage.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Access changes, newest first. Needs `audit:read`.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<Cursor<uuid::Uuid>, AuditEvent, EmptyFields, EmptyFields>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("audit:read").await?;
        let first = page_size(first)?;
        let after = after_id(after.as_deref())?;
        let mut rows = in_scope!(scope.work, |conn| Ok(
            audit::page(conn, after, first + 1).await?
        ))?;
        let more = rows.len() as i64 > first;
        rows.truncate(first as usize);
        Ok(connection(
            rows,
            more,
            after.is_some(),
            |e| e.id,
            EmptyFields,
        ))
    }

    /// The tenant's plan and what it uses of it. Needs `billing:read`.
    async fn usage(&self, ctx: &Context<'_>) -> Result<Usage> {
        let req = ctx.req()?;
        let (scope, _) = req.require("billing:read").await?;
        let plan = req.plan(&scope.tenant.plan_code).await?;
        let (seats, projects) = in_scope!(scope.work, |conn| Ok((
            users::count(conn, false).await?,
            projects::count(conn).await?
        )))?;
        Ok(Usage {
            plan: plan.code,
            seats_used: seats,
            seats_limit: plan.max_seats,
            projects_used: projects,
            projects_limit: plan.max_projects,
        })
    }
}
