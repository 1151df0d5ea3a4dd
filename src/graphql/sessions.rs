//! Signing in and out: sessions, access tokens and refresh tokens.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth;
use crate::domain::sessions::{self, Attempt, Refreshed, Session};
use crate::domain::{audit, users};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt as _, RequestCtx, TenantScope};
use crate::graphql::pagination::parse_id;
use crate::in_scope;

#[Object]
impl Session {
    /// Session id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// When the user signed in.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// Last sign-in or refresh.
    async fn last_used_at(&self) -> DateTime<Utc> {
        self.last_used_at
    }
    /// When the session ends at the latest.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
    /// Whether the request's access token belongs to this session (false
    /// on the sign-in that starts it, which carries no token yet).
    async fn current(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(match ctx.req()?.access().await {
            Ok((_, access)) => access.session == Some(self.id),
            Err(_) => false,
        })
    }
}

/// A signed-in session's credentials.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Access token: send as `Authorization: Bearer <token>`; valid for this
    /// tenant only, until `expiresAt`.
    pub token: String,
    /// When `token` expires.
    pub expires_at: DateTime<Utc>,
    /// Trade it for new tokens with `refreshSession`; each can be used once.
    pub refresh_token: String,
    /// The session.
    pub session: Session,
    /// Who signed in.
    pub user: users::User,
}

/// A refresh token to trade.
#[derive(InputObject)]
pub struct RefreshSessionInput {
    /// From `login`, `acceptInvitation` or the last `refreshSession`.
    pub refresh_token: String,
}

/// A session to end.
#[derive(InputObject)]
pub struct RevokeSessionInput {
    /// The session.
    pub id: ID,
}

/// The session that was ended.
#[derive(SimpleObject)]
pub struct RevokeSessionPayload {
    /// The session as it is now.
    pub session: Session,
}

/// Sessions of the signed-in user.
#[derive(Default)]
pub struct SessionsQuery;

#[Object]
impl SessionsQuery {
    /// The signed-in user's live sessions, newest first.
    async fn my_sessions(&self, ctx: &Context<'_>) -> Result<Vec<Session>> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let user = access.signed_in_user()?;
        Ok(in_scope!(scope.work, |conn| Ok(sessions::live_of(
            conn, user
        )
        .await?))?)
    }
}

/// Signing in and out.
#[derive(Default)]
pub struct SessionsMutation;

#[Object]
impl SessionsMutation {
    /// Signs in to the request's tenant. A wrong password and an unknown
    /// email get the same `UNAUTHENTICATED` answer. Repeated failures for
    /// one email are answered more slowly, then refused for a while with
    /// `RATE_LIMITED` (`extensions.retryAfterSeconds`). A disabled user's
    /// sign-in is refused like a wrong password.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<LoginPayload> {
        let req = ctx.req()?;
        let scope = req.tenant().await?;
        let throttle = req.app.config.throttle();
        // PostgreSQL refuses NUL in text; such an email matches nobody and
        // is not worth a throttling row.
        let email = email.trim().to_owned();
        if email.contains('\0') || email.len() > 320 {
            auth::verify_password(password, None).await?;
            return Err(wrong_credentials().into());
        }
        let (attempt, found) = in_scope!(scope.work, |conn| {
            let attempt = sessions::begin_attempt(conn, &email, &throttle).await?;
            let found = match attempt {
                Attempt::Locked(_) => None,
                Attempt::Allowed(_) => users::find_for_login(conn, &email).await?,
            };
            Ok((attempt, found))
        })?;
        let attempts = match attempt {
            Attempt::Locked(until) => return Err(rate_limited(until).into()),
            Attempt::Allowed(n) => n,
        };
        // A disabled user gets the same answer as a wrong password, so the
        // answer never confirms a disabled account's password.
        let (id, hash) = match found {
            Some((id, hash, disabled)) => (Some(id).filter(|_| !disabled), Some(hash)),
            None => (None, None),
        };
        let ok = auth::verify_password(password, hash).await?;
        let Some(id) = id.filter(|_| ok) else {
            if attempts >= throttle.lock_after {
                let until = in_scope!(scope.work, |conn| Ok(sessions::lock(
                    conn, &email, &throttle
                )
                .await?))?;
                return Err(rate_limited(until).into());
            }
            tokio::time::sleep(throttle.delay(attempts)).await;
            return Err(wrong_credentials().into());
        };
        let ttl = req.app.config.session_ttl();
        let started = in_scope!(scope.work, |conn| {
            if let Some(until) = sessions::succeed(conn, &email).await? {
                return Ok(Err(until));
            }
            let (session, token) = sessions::start(conn, id, ttl, None).await?;
            let user = users::find(conn, id).await?.ok_or_else(wrong_credentials)?;
            Ok(Ok((session, token, user)))
        })?;
        let (session, refresh_token, user) = started.map_err(rate_limited)?;
        Ok(issue(req, scope, session, refresh_token, user)?)
    }

    /// Trades a refresh token for a new access token and refresh token. A
    /// refresh token works once: presenting a used one again revokes the
    /// whole session (someone else has a copy).
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        input: RefreshSessionInput,
    ) -> Result<LoginPayload> {
        let req = ctx.req()?;
        let scope = req.tenant().await?;
        // The outcome is committed first (a detected reuse must stay revoked),
        // then turned into an answer.
        let (outcome, user) = in_scope!(scope.work, |conn| {
            let outcome = sessions::refresh(conn, &input.refresh_token).await?;
            let user = match &outcome {
                Refreshed::Rotated { session, .. } => users::find(conn, session.user_id).await?,
                _ => None,
            };
            if let Refreshed::Reused = outcome {
                tracing::warn!(tenant = %scope.tenant.slug, "refresh token reused; session revoked");
            }
            Ok((outcome, user))
        })?;
        match (outcome, user) {
            (Refreshed::Rotated { session, token }, Some(user)) => {
                Ok(issue(req, scope, session, token, user)?)
            }
            (Refreshed::Reused, _) => Err(AppError::Unauthenticated(
                "this refresh token was already used; the session has been revoked for safety"
                    .into(),
            )
            .into()),
            (Refreshed::Disabled, _) => {
                Err(AppError::Unauthenticated("this user is disabled".into()).into())
            }
            _ => Err(AppError::Unauthenticated(
                "invalid or expired refresh token; sign in again".into(),
            )
            .into()),
        }
    }

    /// Ends the session of the request's access token.
    async fn logout(&self, ctx: &Context<'_>) -> Result<RevokeSessionPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let Some(id) = access.session else {
            return Err(AppError::bad_input(
                "token",
                "only a user's access token has a session to end",
            )
            .into());
        };
        let session = end(scope, access, id, "signed out").await?;
        Ok(RevokeSessionPayload { session })
    }

    /// Ends a session: one of your own (signed in, not with an API key), or
    /// anyone's with `members:manage` (but not someone with more permissions
    /// than you). Its access tokens
    /// stop working at once.
    async fn revoke_session(
        &self,
        ctx: &Context<'_>,
        input: RevokeSessionInput,
    ) -> Result<RevokeSessionPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let id = parse_id(&input.id, "id")?;
        let session = end(scope, access, id, "revoked").await?;
        Ok(RevokeSessionPayload { session })
    }
}

async fn end(
    scope: &TenantScope,
    access: &crate::graphql::context::Access,
    id: Uuid,
    reason: &str,
) -> AppResult<Session> {
    in_scope!(scope.work, |conn| {
        let session = sessions::find(conn, id)
            .await?
            .ok_or_else(|| AppError::not_found(Some("id"), "no such session"))?;
        let own = access.api_key.is_none()
            && access.actor == crate::graphql::context::Actor::User(session.user_id);
        if !own {
            // Someone else's session: only for managers, and never one of a
            // user with more rights; unknown to everyone else.
            if access.require("members:manage").is_err() {
                return Err(AppError::not_found(Some("id"), "no such session"));
            }
            access.require_covers_user(conn, session.user_id).await?;
        }
        sessions::revoke(conn, id, reason).await?;
        audit::record(
            conn,
            access.who(),
            "session.revoked",
            Some(("session", id)),
            reason,
        )
        .await?;
        sessions::find(conn, id)
            .await?
            .ok_or_else(|| AppError::not_found(Some("id"), "no such session"))
    })
}

/// Signs an access token for a session and builds the payload.
pub fn issue(
    req: &RequestCtx,
    scope: &TenantScope,
    session: Session,
    refresh_token: String,
    user: users::User,
) -> AppResult<LoginPayload> {
    let (token, expires_at) =
        req.app
            .keys
            .issue(user.id, scope.tenant.id, &scope.tenant.slug, session.id)?;
    Ok(LoginPayload {
        token,
        expires_at,
        refresh_token,
        session,
        user,
    })
}

fn wrong_credentials() -> AppError {
    AppError::Unauthenticated("wrong email or password".into())
}

/// `RATE_LIMITED` until `until`.
pub fn rate_limited(until: DateTime<Utc>) -> AppError {
    let secs = (until - Utc::now()).num_seconds().max(1);
    AppError::RateLimited {
        message: format!("too many failed sign-ins for this email; try again in {secs} seconds"),
        retry_after_secs: secs,
    }
}
