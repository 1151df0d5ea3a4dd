//! Invitations by email: a role, a single-use token, an expiry.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Duration, Utc};

use crate::auth;
use crate::domain::audit::{self, Who};
use crate::domain::invitations::{self, DEFAULT_DAYS, Invitation};
use crate::domain::roles::{self, Role};
use crate::domain::{sessions, users};
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{RoleKey, load_error};
use crate::graphql::pagination::parse_id;
use crate::graphql::sessions::{LoginPayload, issue};
use crate::in_scope;

#[Object]
impl Invitation {
    /// Invitation id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Who is invited.
    async fn email(&self) -> &str {
        &self.email
    }
    /// The role they get on accepting (null if it was deleted after the
    /// invitation closed).
    async fn role(&self, ctx: &Context<'_>) -> Result<Option<Role>> {
        let Some(role) = self.role_id else {
            return Ok(None);
        };
        let scope = ctx.req()?.tenant().await?;
        scope
            .loader
            .load_one(RoleKey(role))
            .await
            .map_err(load_error)
    }
    /// `pending`, `accepted`, `revoked` or `expired`.
    #[graphql(name = "status")]
    async fn status_field(&self) -> &'static str {
        self.status()
    }
    /// When it was sent.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When it can no longer be accepted.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
    /// When it was accepted.
    async fn accepted_at(&self) -> Option<DateTime<Utc>> {
        self.accepted_at
    }
}

/// Someone to invite.
#[derive(InputObject)]
pub struct InviteUserInput {
    /// Their email; they sign in with it.
    pub email: String,
    /// Key of the role they get (default `member`).
    pub role: Option<String>,
    /// Days until the invitation lapses (1 to 30, default 7).
    pub expires_in_days: Option<i32>,
}

/// The invitation and its token.
#[derive(SimpleObject)]
pub struct InviteUserPayload {
    /// The invitation.
    pub invitation: Invitation,
    /// Shown this once: send it to the invitee (in a link); it works once.
    pub token: String,
}

/// An invitation to revoke.
#[derive(InputObject)]
pub struct RevokeInvitationInput {
    /// The invitation.
    pub id: ID,
}

/// The revoked invitation.
#[derive(SimpleObject)]
pub struct RevokeInvitationPayload {
    /// The invitation as it is now.
    pub invitation: Invitation,
}

/// Accepting an invitation.
#[derive(InputObject)]
pub struct AcceptInvitationInput {
    /// The token from the invitation.
    pub token: String,
    /// Name shown in the dashboard.
    pub display_name: String,
    /// At least 8 characters.
    pub password: String,
}

/// Invitations.
#[derive(Default)]
pub struct InvitationsQuery;

#[Object]
impl InvitationsQuery {
    /// Invitations, newest first. Needs `members:manage`.
    async fn invitations(&self, ctx: &Context<'_>) -> Result<Vec<Invitation>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:manage").await?;
        Ok(in_scope!(scope.work, |conn| Ok(
            invitations::list(conn).await?
        ))?)
    }
}

/// Inviting people.
#[derive(Default)]
pub struct InvitationsMutation;

#[Object]
impl InvitationsMutation {
    /// Invites someone by email with a role. Needs `members:manage` and
    /// every permission of the role; open invitations count against seats.
    async fn invite_user(
        &self,
        ctx: &Context<'_>,
        input: InviteUserInput,
    ) -> Result<InviteUserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("members:manage").await?;
        let email = users::parse_email(&input.email, "email")?;
        let days = input.expires_in_days.unwrap_or(DEFAULT_DAYS as i32);
        if !(1..=30).contains(&days) {
            return Err(AppError::bad_input("expiresInDays", "between 1 and 30 days").into());
        }
        let role_key = input
            .role
            .unwrap_or_else(|| roles::builtin::MEMBER.to_owned());
        let plan = req.plan(&scope.tenant.plan_code).await?;
        let (invitation, token) = in_scope!(scope.work, |conn| {
            let role = roles::find_by_key(conn, &role_key)
                .await?
                .ok_or_else(|| AppError::not_found(Some("role"), "no such role"))?;
            access.require_all(&roles::effective_permissions(conn, role.id).await?)?;
            if users::find_for_login(conn, &email).await?.is_some() {
                return Err(AppError::conflict(
                    "email",
                    "a user with this email already exists",
                ));
            }
            users::check_seats(conn, plan.max_seats, true).await?;
            let made = invitations::create(
                conn,
                &email,
                role.id,
                access.who().user,
                Duration::days(i64::from(days)),
            )
            .await?;
            audit::record(
                conn,
                access.who(),
                "invitation.created",
                Some(("invitation", made.0.id)),
                &email,
            )
            .await?;
            Ok(made)
        })?;
        Ok(InviteUserPayload { invitation, token })
    }

    /// Revokes an open invitation. Needs `members:manage`.
    async fn revoke_invitation(
        &self,
        ctx: &Context<'_>,
        input: RevokeInvitationInput,
    ) -> Result<RevokeInvitationPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("members:manage").await?;
        let id = parse_id(&input.id, "id")?;
        let invitation = in_scope!(scope.work, |conn| {
            let inv = invitations::revoke(conn, id).await?.ok_or_else(|| {
                AppError::not_found(Some("id"), "no open invitation with this id")
            })?;
            audit::record(
                conn,
                access.who(),
                "invitation.revoked",
                Some(("invitation", id)),
                &inv.email,
            )
            .await?;
            Ok(inv)
        })?;
        Ok(RevokeInvitationPayload { invitation })
    }

    /// Accepts an invitation (no sign-in needed; the request names the
    /// tenant): creates the user with the invited email and role, and signs
    /// them in. The token works once.
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        input: AcceptInvitationInput,
    ) -> Result<LoginPayload> {
        let req = ctx.req()?;
        let scope = req.tenant().await?;
        let display_name = users::parse_display_name(&input.display_name, "displayName")?;
        auth::check_new_password(&input.password, "password")?;
        let plan = req.plan(&scope.tenant.plan_code).await?;
        let hash = auth::hash_password(input.password).await?;
        let ttl = req.app.config.session_ttl();
        let (session, refresh, user) = in_scope!(scope.work, |conn| {
            let inv = invitations::claim(conn, &input.token)
                .await?
                .ok_or_else(|| {
                    AppError::bad_input(
                        "token",
                        "this invitation is invalid, used, revoked or expired",
                    )
                })?;
            users::check_seats(conn, plan.max_seats, false).await?;
            let user = users::insert(
                conn,
                users::NewUser {
                    id: uuid::Uuid::now_v7(),
                    email: &inv.email,
                    display_name: &display_name,
                    password_hash: &hash,
                },
            )
            .await?;
            let role = inv.role_id.ok_or_else(|| {
                AppError::bad_input(
                    "token",
                    "this invitation is invalid, used, revoked or expired",
                )
            })?;
            roles::assign(conn, user.id, role, None, inv.invited_by).await?;
            invitations::mark_accepted(conn, inv.id, user.id).await?;
            let who = Who {
                kind: "user",
                user: Some(user.id),
            };
            audit::record(
                conn,
                who,
                "invitation.accepted",
                Some(("invitation", inv.id)),
                &inv.email,
            )
            .await?;
            let (session, refresh) = sessions::start(conn, user.id, ttl, None).await?;
            Ok((session, refresh, user))
        })?;
        Ok(issue(req, scope, session, refresh, user)?)
    }
}
