//! Members: the tenant's users, and managing them.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::auth;
use crate::domain::audit;
use crate::domain::roles::{self, Assignment};
use crate::domain::sessions::{self, Attempt};
use crate::domain::users::{self, User};
use crate::error::AppError;
use crate::graphql::access::RoleAssignment;
use crate::graphql::context::{Actor, ContextExt as _};
use crate::graphql::loaders::{UserRolesKey, load_error};
use crate::graphql::pagination::{Cursor, after_id, connection, page_size, parse_id};
use crate::graphql::sessions::rate_limited;
use crate::in_scope;

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
    /// Whether the user is disabled (cannot sign in; sessions and keys stop).
    async fn disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// The roles the user holds, expired ones included (see `expired`).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<RoleAssignment>> {
        // Who may see a user was settled where the user was reached (a
        // guarded query, or the user's own sign-in).
        let scope = ctx.req()?.tenant().await?;
        let found: Vec<Assignment> = scope
            .loader
            .load_one(UserRolesKey(self.id))
            .await
            .map_err(load_error)?
            .unwrap_or_default();
        Ok(found.into_iter().map(RoleAssignment).collect())
    }
}

/// Who to add.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// Sign-in email, unique in the tenant whatever its case.
    pub email: String,
    /// Name shown in the dashboard.
    pub display_name: String,
    /// At least 8 characters.
    pub password: String,
    /// Key of the role to give (default `member`).
    pub role: Option<String>,
}

/// The new user.
#[derive(SimpleObject)]
pub struct UserPayload {
    /// The user as it is now.
    pub user: User,
}

/// Profile changes; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateUserInput {
    /// The user to change (yourself, or anyone with `members:manage`).
    pub id: ID,
    /// New sign-in email.
    pub email: Option<String>,
    /// New display name.
    pub display_name: Option<String>,
}

/// A user to disable or enable.
#[derive(InputObject)]
pub struct UserIdInput {
    /// The user.
    pub id: ID,
}

/// A password change for the signed-in user.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The password now.
    pub current_password: String,
    /// The new one, at least 8 characters.
    pub new_password: String,
}

/// The tenant's users.
#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The signed-in user (an API key's owner); null for the platform admin.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let Actor::User(id) = access.actor else {
            return Ok(None);
        };
        let user = in_scope!(scope.work, |conn| Ok(users::find(conn, id).await?))?;
        user.map(Some)
            .ok_or_else(|| AppError::Unauthenticated("this user no longer exists".into()).into())
    }

    /// The tenant's users, oldest first. Needs `members:read`.
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Include disabled users (default false).")] include_disabled: Option<bool>,
    ) -> Result<Connection<Cursor<uuid::Uuid>, User, UserConnectionFields, EmptyFields>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:read").await?;
        let first = page_size(first)?;
        let after = after_id(after.as_deref())?;
        let all = include_disabled.unwrap_or(false);
        let (rows, total) = in_scope!(scope.work, |conn| {
            let rows = users::page(conn, after, first + 1, all).await?;
            Ok((rows, users::count(conn, all).await?))
        })?;
        let mut rows = rows;
        let more = rows.len() as i64 > first;
        rows.truncate(first as usize);
        Ok(connection(
            rows,
            more,
            after.is_some(),
            |u| u.id,
            UserConnectionFields(total),
        ))
    }

    /// One user. Needs `members:read`.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:read").await?;
        let id = parse_id(&id, "id")?;
        Ok(in_scope!(scope.work, |conn| Ok(
            users::find(conn, id).await?
        ))?)
    }
}

/// Extra fields of `UserConnection`.
pub struct UserConnectionFields(i64);

#[Object]
impl UserConnectionFields {
    /// Users matching, across all pages.
    async fn total_count(&self) -> i64 {
        self.0
    }
}

/// Managing the tenant's users.
#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Adds a user with a password and a role. Needs `members:manage`, and
    /// every permission of the role given; counts against the plan's seats.
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<UserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("members:manage").await?;
        let email = users::parse_email(&input.email, "email")?;
        let display_name = users::parse_display_name(&input.display_name, "displayName")?;
        auth::check_new_password(&input.password, "password")?;
        let role_key = input
            .role
            .unwrap_or_else(|| roles::builtin::MEMBER.to_owned());
        let plan = req.plan(&scope.tenant.plan_code).await?;
        let hash = auth::hash_password(input.password).await?;
        let user = in_scope!(scope.work, |conn| {
            let role = roles::find_by_key(conn, &role_key)
                .await?
                .ok_or_else(|| AppError::not_found(Some("role"), "no such role"))?;
            access.require_all(&roles::effective_permissions(conn, role.id).await?)?;
            users::check_seats(conn, plan.max_seats, false).await?;
            let user = users::insert(
                conn,
                users::NewUser {
                    id: uuid::Uuid::now_v7(),
                    email: &email,
                    display_name: &display_name,
                    password_hash: &hash,
                },
            )
            .await?;
            roles::assign(conn, user.id, role.id, None, access.who().user).await?;
            audit::record(
                conn,
                access.who(),
                "user.created",
                Some(("user", user.id)),
                &role.key,
            )
            .await?;
            Ok(user)
        })?;
        Ok(UserPayload { user })
    }

    /// Changes a user's email or display name: your own, or anyone's with
    /// `members:manage` (but not someone with more permissions than you).
    async fn update_user(&self, ctx: &Context<'_>, input: UpdateUserInput) -> Result<UserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let id = parse_id(&input.id, "id")?;
        let email = input
            .email
            .as_deref()
            .map(|e| users::parse_email(e, "email"))
            .transpose()?;
        let display_name = input
            .display_name
            .as_deref()
            .map(|n| users::parse_display_name(n, "displayName"))
            .transpose()?;
        // An API key acting on its owner's account is not "own": it needs
        // `members:manage` like anyone else.
        let own = access.api_key.is_none() && access.actor == Actor::User(id);
        if !own {
            access.require("members:manage")?;
        }
        let user = in_scope!(scope.work, |conn| {
            if !own {
                access.require_covers_user(conn, id).await?;
            }
            let user = users::update_profile(conn, id, email.as_deref(), display_name.as_deref())
                .await?
                .ok_or_else(|| AppError::not_found(Some("id"), "no such user"))?;
            audit::record(conn, access.who(), "user.updated", Some(("user", id)), "").await?;
            Ok(user)
        })?;
        Ok(UserPayload { user })
    }

    /// Disables a user: they cannot sign in, and their sessions and API keys
    /// stop working at once. Needs `members:manage`; the last owner stays.
    async fn disable_user(&self, ctx: &Context<'_>, input: UserIdInput) -> Result<UserPayload> {
        set_disabled(ctx, input, true).await
    }

    /// Enables a disabled user again (counts against the plan's seats).
    /// Needs `members:manage`.
    async fn enable_user(&self, ctx: &Context<'_>, input: UserIdInput) -> Result<UserPayload> {
        set_disabled(ctx, input, false).await
    }

    /// Changes the signed-in user's password; their other sessions end.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> Result<UserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let id = access.signed_in_user()?;
        auth::check_new_password(&input.new_password, "newPassword")?;
        let throttle = req.app.config.throttle();
        // Wrong current passwords count against the same sign-in throttle
        // as `login`: a stolen access token does not buy unlimited guesses.
        let (email, stored, attempt) = in_scope!(scope.work, |conn| {
            let user = users::find(conn, id)
                .await?
                .ok_or_else(|| AppError::Unauthenticated("this user no longer exists".into()))?;
            let stored = users::password_hash(conn, id).await?;
            let attempt = sessions::begin_attempt(conn, &user.email, &throttle).await?;
            Ok((user.email, stored, attempt))
        })?;
        let attempts = match attempt {
            Attempt::Locked(until) => return Err(rate_limited(until).into()),
            Attempt::Allowed(n) => n,
        };
        if !auth::verify_password(input.current_password, stored.clone()).await? {
            if attempts >= throttle.lock_after {
                let until = in_scope!(scope.work, |conn| Ok(sessions::lock(
                    conn, &email, &throttle
                )
                .await?))?;
                return Err(rate_limited(until).into());
            }
            return Err(
                AppError::bad_input("currentPassword", "the current password is wrong").into(),
            );
        }
        let hash = auth::hash_password(input.new_password).await?;
        let session = access.session;
        let user = in_scope!(scope.work, |conn| {
            // Still signed in, and nobody changed the password meanwhile
            // (a change elsewhere would have ended this session).
            let live = match session {
                Some(sid) => sessions::find(conn, sid)
                    .await?
                    .is_some_and(|s| s.revoked_at.is_none()),
                None => false,
            };
            if !live {
                return Err(AppError::Unauthenticated(
                    "this session has ended; sign in again".into(),
                ));
            }
            if !users::replace_password(conn, id, stored.as_deref().unwrap_or(""), &hash).await? {
                return Err(AppError::Conflict {
                    message: "the password was changed meanwhile; sign in again".into(),
                    field: Some("currentPassword"),
                });
            }
            sessions::succeed(conn, &email).await?;
            sessions::revoke_all(conn, id, session, "password changed").await?;
            audit::record(
                conn,
                access.who(),
                "user.password_changed",
                Some(("user", id)),
                "",
            )
            .await?;
            Ok(users::find(conn, id).await?)
        })?
        .ok_or_else(|| AppError::not_found(Some("id"), "no such user"))?;
        Ok(UserPayload { user })
    }
}

async fn set_disabled(
    ctx: &Context<'_>,
    input: UserIdInput,
    disabled: bool,
) -> Result<UserPayload> {
    let req = ctx.req()?;
    let (scope, access) = req.require("members:manage").await?;
    let id = parse_id(&input.id, "id")?;
    let plan = req.plan(&scope.tenant.plan_code).await?;
    let user = in_scope!(scope.work, |conn| {
        access.require_covers_user(conn, id).await?;
        if disabled {
            roles::keep_an_owner(conn, id).await?;
        } else {
            let current = users::find(conn, id)
                .await?
                .ok_or_else(|| AppError::not_found(Some("id"), "no such user"))?;
            if current.disabled_at.is_some() {
                users::check_seats(conn, plan.max_seats, false).await?;
            }
        }
        let user = users::set_disabled(conn, id, disabled)
            .await?
            .ok_or_else(|| AppError::not_found(Some("id"), "no such user"))?;
        if disabled {
            sessions::revoke_all(conn, id, None, "user disabled").await?;
        }
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        audit::record(conn, access.who(), action, Some(("user", id)), "").await?;
        Ok(user)
    })?;
    Ok(UserPayload { user })
}
