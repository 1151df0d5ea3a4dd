//! Signing in, and the user type.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::auth;
use crate::domain::users::{self, User};
use crate::error::AppError;
use crate::graphql::context::{Actor, ContextExt as _};
use crate::in_tenant;

#[Object]
impl User {
    /// User id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Sign-in email.
    async fn email(&self) -> &str {
        &self.email
    }
    /// Name shown in the dashboard.
    async fn display_name(&self) -> &str {
        &self.display_name
    }
    /// `owner` or `member`.
    async fn role(&self) -> &str {
        &self.role
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

/// A signed-in session.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Send as `Authorization: Bearer <token>`; valid for this tenant only.
    pub token: String,
    /// Who signed in.
    pub user: User,
}

/// The signed-in user.
#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The signed-in user; null for the platform admin.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let (scope, actor) = ctx.req()?.tenant_actor().await?;
        let Actor::User(id) = actor else {
            return Ok(None);
        };
        let pool = &ctx.req()?.app.pool;
        let user = in_tenant!(pool, &scope.slug, |conn| Ok(users::find(conn, id).await?))?;
        // A token for a user who no longer exists is not a session.
        user.map(Some)
            .ok_or_else(|| AppError::Unauthenticated("this user no longer exists".into()).into())
    }
}

/// Signing in.
#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Signs in to the request's tenant. A wrong password and an unknown
    /// email get the same `UNAUTHENTICATED` answer.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<LoginPayload> {
        let req = ctx.req()?;
        let scope = req.tenant().await?;
        let pool = &req.app.pool;
        // PostgreSQL refuses NUL in text; such an email matches nobody.
        let found = if email.contains('\0') {
            None
        } else {
            in_tenant!(pool, &scope.slug, |conn| Ok(users::find_for_login(
                conn, &email
            )
            .await?))?
        };
        let (id, hash) = match found {
            Some((id, hash)) => (Some(id), Some(hash)),
            None => (None, None),
        };
        let ok = auth::verify_password(password, hash).await?;
        let Some(id) = id.filter(|_| ok) else {
            return Err(AppError::Unauthenticated("wrong email or password".into()).into());
        };
        let user = in_tenant!(pool, &scope.slug, |conn| Ok(users::find(conn, id).await?))?
            .ok_or_else(|| AppError::Unauthenticated("wrong email or password".into()))?;
        let token = req
            .app
            .keys
            .issue(user.id, scope.tenant.id, &scope.tenant.slug)?;
        Ok(LoginPayload { token, user })
    }
}
