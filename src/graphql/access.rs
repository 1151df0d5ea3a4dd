//! Roles and permissions: the catalogue, custom roles with inheritance, and
//! who holds which role until when.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::permissions::{self, CATALOGUE};
use crate::domain::roles::{self, Assignment, Role, RoleFields};
use crate::domain::{audit, users};
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{RoleEffectiveKey, RoleKey, RolePermissionsKey, load_error};
use crate::graphql::pagination::parse_id;
use crate::graphql::users::UserPayload;
use crate::in_scope;

/// One permission of the catalogue.
#[derive(SimpleObject)]
pub struct Permission {
    /// `resource:action`, e.g. `projects:write`.
    pub name: String,
    /// What it allows.
    pub description: String,
}

#[Object]
impl Role {
    /// Role id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Stable key: `owner`, `admin`, `member`, `viewer`, or a custom one.
    async fn key(&self) -> &str {
        &self.key
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// What the role is for.
    async fn description(&self) -> &str {
        &self.description
    }
    /// Seeded with the tenant; cannot be changed or deleted.
    async fn builtin(&self) -> bool {
        self.builtin
    }
    /// The role whose permissions this one inherits.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Role>> {
        let Some(parent) = self.parent_id else {
            return Ok(None);
        };
        let scope = ctx.req()?.tenant().await?;
        scope
            .loader
            .load_one(RoleKey(parent))
            .await
            .map_err(load_error)
    }
    /// The role's own permissions (not inherited ones).
    async fn permissions(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let scope = ctx.req()?.tenant().await?;
        Ok(scope
            .loader
            .load_one(RolePermissionsKey(self.id))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }
    /// Own and inherited permissions (batched across roles).
    async fn effective_permissions(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let scope = ctx.req()?.tenant().await?;
        Ok(scope
            .loader
            .load_one(RoleEffectiveKey(self.id))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }
}

/// A role held by a user.
pub struct RoleAssignment(pub Assignment);

#[Object]
impl RoleAssignment {
    /// The role.
    async fn role(&self) -> &Role {
        &self.0.role
    }
    /// When it stops granting; null: never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// Whether it has stopped granting.
    async fn expired(&self) -> bool {
        self.0.expires_at.is_some_and(|t| t <= Utc::now())
    }
}

/// A custom role.
#[derive(InputObject)]
pub struct CreateRoleInput {
    /// Stable key, 2 to 40 of `a-z 0-9 _ -`, starting with a letter.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What the role is for.
    pub description: Option<String>,
    /// A role whose permissions this one inherits.
    pub parent_id: Option<ID>,
    /// Its own permissions, from the catalogue (`permissions` query).
    pub permissions: Vec<String>,
}

/// New values for a custom role (every field is replaced).
#[derive(InputObject)]
pub struct UpdateRoleInput {
    /// The role.
    pub id: ID,
    /// Display name.
    pub name: String,
    /// What the role is for.
    pub description: Option<String>,
    /// A role whose permissions this one inherits; null for none.
    pub parent_id: Option<ID>,
    /// Its own permissions.
    pub permissions: Vec<String>,
}

/// A role to delete.
#[derive(InputObject)]
pub struct DeleteRoleInput {
    /// The role.
    pub id: ID,
}

/// The role created or changed.
#[derive(SimpleObject)]
pub struct RolePayload {
    /// The role as it is now.
    pub role: Role,
}

/// The role deleted.
#[derive(SimpleObject)]
pub struct DeleteRolePayload {
    /// Its id.
    pub deleted_role_id: ID,
}

/// A role to give.
#[derive(InputObject)]
pub struct AssignRoleInput {
    /// Who gets it.
    pub user_id: ID,
    /// Which role.
    pub role_id: ID,
    /// When it stops granting; omit for never. Giving a role someone holds
    /// changes its expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A role to take away.
#[derive(InputObject)]
pub struct UnassignRoleInput {
    /// From whom.
    pub user_id: ID,
    /// Which role.
    pub role_id: ID,
}

/// Roles and permissions.
#[derive(Default)]
pub struct AccessQuery;

#[Object]
impl AccessQuery {
    /// Every permission there is.
    async fn permissions(&self, ctx: &Context<'_>) -> Result<Vec<Permission>> {
        ctx.req()?.access().await?;
        Ok(CATALOGUE
            .iter()
            .map(|(name, description)| Permission {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
            })
            .collect())
    }

    /// What the request's credentials may do here (for showing and hiding
    /// parts of a dashboard): a user's roles, or an API key's permissions
    /// within its owner's.
    async fn my_permissions(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let (_, access) = ctx.req()?.access().await?;
        Ok(access.permissions.to_vec())
    }

    /// Every role, built-in ones first. Needs `members:read`.
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("members:read").await?;
        Ok(in_scope!(scope.work, |conn| Ok(roles::list(conn).await?))?)
    }
}

/// Managing roles.
#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Creates a custom role. Needs `roles:manage`, and every permission the
    /// role would grant (its own and inherited).
    async fn create_role(&self, ctx: &Context<'_>, input: CreateRoleInput) -> Result<RolePayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("roles:manage").await?;
        let key = roles::parse_key(&input.key)?;
        let fields = role_fields(
            input.name,
            input.description,
            input.parent_id,
            &input.permissions,
        )?;
        let role = in_scope!(scope.work, |conn| {
            let role = roles::create(conn, &key, &fields).await?;
            access.require_all(&roles::effective_permissions(conn, role.id).await?)?;
            audit::record(
                conn,
                access.who(),
                "role.created",
                Some(("role", role.id)),
                &key,
            )
            .await?;
            Ok(role)
        })?;
        Ok(RolePayload { role })
    }

    /// Changes a custom role. Needs `roles:manage` and every permission the
    /// role would grant; takes effect on the holders' next request.
    async fn update_role(&self, ctx: &Context<'_>, input: UpdateRoleInput) -> Result<RolePayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("roles:manage").await?;
        let id = parse_id(&input.id, "id")?;
        let fields = role_fields(
            input.name,
            input.description,
            input.parent_id,
            &input.permissions,
        )?;
        let role = in_scope!(scope.work, |conn| {
            // What it and the roles inheriting from it grant, before and
            // after, must all be yours: a change reaches every holder.
            access.require_all(&roles::permissions_affected_by(conn, id).await?)?;
            let role = roles::update(conn, id, &fields).await?;
            access.require_all(&roles::permissions_affected_by(conn, id).await?)?;
            audit::record(
                conn,
                access.who(),
                "role.updated",
                Some(("role", id)),
                &role.key,
            )
            .await?;
            Ok(role)
        })?;
        Ok(RolePayload { role })
    }

    /// Deletes a custom role nobody holds or inherits from. Needs `roles:manage`.
    async fn delete_role(
        &self,
        ctx: &Context<'_>,
        input: DeleteRoleInput,
    ) -> Result<DeleteRolePayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("roles:manage").await?;
        let id = parse_id(&input.id, "id")?;
        in_scope!(scope.work, |conn| {
            access.require_all(&roles::permissions_affected_by(conn, id).await?)?;
            roles::delete(conn, id).await?;
            audit::record(conn, access.who(), "role.deleted", Some(("role", id)), "").await?;
            Ok(())
        })?;
        Ok(DeleteRolePayload {
            deleted_role_id: input.id,
        })
    }

    /// Gives a user a role, optionally until a time. Needs `members:manage`
    /// and every permission of the role; you cannot change someone with more
    /// permissions than you.
    async fn assign_role(&self, ctx: &Context<'_>, input: AssignRoleInput) -> Result<UserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("members:manage").await?;
        let user_id = parse_id(&input.user_id, "userId")?;
        let role_id = parse_id(&input.role_id, "roleId")?;
        if input.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(AppError::bad_input("expiresAt", "expiresAt must be in the future").into());
        }
        let user = in_scope!(scope.work, |conn| {
            let role = roles::find(conn, role_id)
                .await?
                .ok_or_else(|| AppError::not_found(Some("roleId"), "no such role"))?;
            access.require_all(&roles::effective_permissions(conn, role_id).await?)?;
            access.require_covers_user(conn, user_id).await?;
            // Putting an end date on the last permanent owner would leave
            // the tenant ownerless later.
            if role.key == roles::builtin::OWNER
                && input.expires_at.is_some()
                && roles::is_permanent_owner(conn, user_id).await?
            {
                roles::keep_an_owner(conn, user_id).await?;
            }
            roles::assign(conn, user_id, role_id, input.expires_at, access.who().user).await?;
            let detail = match input.expires_at {
                Some(t) => format!("{} until {}", role.key, t.to_rfc3339()),
                None => role.key.clone(),
            };
            audit::record(
                conn,
                access.who(),
                "role.assigned",
                Some(("user", user_id)),
                &detail,
            )
            .await?;
            Ok(users::find(conn, user_id).await?)
        })?
        .ok_or_else(|| AppError::not_found(Some("userId"), "no such user"))?;
        Ok(UserPayload { user })
    }

    /// Takes a role from a user. Needs `members:manage` and every permission
    /// of the role. The tenant's last owner keeps the owner role.
    async fn unassign_role(
        &self,
        ctx: &Context<'_>,
        input: UnassignRoleInput,
    ) -> Result<UserPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("members:manage").await?;
        let user_id = parse_id(&input.user_id, "userId")?;
        let role_id = parse_id(&input.role_id, "roleId")?;
        let user = in_scope!(scope.work, |conn| {
            let role = roles::find(conn, role_id)
                .await?
                .ok_or_else(|| AppError::not_found(Some("roleId"), "no such role"))?;
            access.require_all(&roles::effective_permissions(conn, role_id).await?)?;
            access.require_covers_user(conn, user_id).await?;
            if role.key == roles::builtin::OWNER {
                roles::keep_an_owner(conn, user_id).await?;
            }
            if !roles::unassign(conn, user_id, role_id).await? {
                return Err(AppError::not_found(
                    Some("roleId"),
                    "the user does not hold this role",
                ));
            }
            audit::record(
                conn,
                access.who(),
                "role.unassigned",
                Some(("user", user_id)),
                &role.key,
            )
            .await?;
            Ok(users::find(conn, user_id).await?)
        })?
        .ok_or_else(|| AppError::not_found(Some("userId"), "no such user"))?;
        Ok(UserPayload { user })
    }
}

fn role_fields(
    name: String,
    description: Option<String>,
    parent: Option<ID>,
    wanted: &[String],
) -> Result<RoleFields, AppError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.contains('\0') {
        return Err(AppError::bad_input(
            "name",
            "a role name is 1 to 100 characters",
        ));
    }
    let description = description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > 1000 || description.contains('\0') {
        return Err(AppError::bad_input(
            "description",
            "at most 1000 characters",
        ));
    }
    let parent_id = parent.map(|p| parse_id(&p, "parentId")).transpose()?;
    let permissions = wanted
        .iter()
        .map(|p| permissions::parse(p, "permissions"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoleFields {
        name,
        description,
        parent_id,
        permissions,
    })
}
