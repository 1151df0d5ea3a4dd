//! Roles, their permissions and who holds them. Every function runs on a
//! tenant-bound connection.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::db::schema::tenant::{role_assignments, role_permissions, roles, users};
use crate::domain::permissions::PermissionSet;
use crate::error::{AppError, AppResult};

/// Keys of the seeded roles.
pub mod builtin {
    /// Everything; a tenant always keeps one.
    pub const OWNER: &str = "owner";
    /// Everything but billing.
    pub const ADMIN: &str = "admin";
    /// Reads and writes projects and tasks.
    pub const MEMBER: &str = "member";
    /// Reads only.
    pub const VIEWER: &str = "viewer";
}

/// A role.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = roles)]
pub struct Role {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub parent_id: Option<Uuid>,
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One role held by one user.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub user_id: Uuid,
    pub role: Role,
    /// When the role stops granting; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Every role, built-in ones first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Role>> {
    roles::table
        .select(Role::as_select())
        .order((roles::builtin.desc(), roles::key))
        .load(conn)
        .await
}

/// The role with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Role>> {
    roles::table
        .find(id)
        .select(Role::as_select())
        .first(conn)
        .await
        .optional()
}

/// The role with `key`.
pub async fn find_by_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<Role>> {
    roles::table
        .filter(roles::key.eq(key))
        .select(Role::as_select())
        .first(conn)
        .await
        .optional()
}

/// A role's own permissions (not inherited ones), for several roles.
pub async fn own_permissions(
    conn: &mut AsyncPgConnection,
    role_ids: &[Uuid],
) -> QueryResult<HashMap<Uuid, Vec<String>>> {
    let rows: Vec<(Uuid, String)> = role_permissions::table
        .filter(role_permissions::role_id.eq_any(role_ids))
        .select((role_permissions::role_id, role_permissions::permission))
        .order((role_permissions::role_id, role_permissions::permission))
        .load(conn)
        .await?;
    let mut map: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (role, permission) in rows {
        map.entry(role).or_default().push(permission);
    }
    Ok(map)
}

/// Runs a query returning one text column `permission`, bound to `role_id`.
async fn permission_query(
    conn: &mut AsyncPgConnection,
    sql: &str,
    role_id: Uuid,
) -> QueryResult<PermissionSet> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        permission: String,
    }
    let rows: Vec<Row> = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(role_id)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.permission).collect())
}

/// `chain`: role `$1` and its ancestors.
const CHAIN_UP: &str = "WITH RECURSIVE chain (id, parent_id) AS ( \
       SELECT id, parent_id FROM roles WHERE id = $1 \
       UNION SELECT r.id, r.parent_id FROM roles r JOIN chain c ON r.id = c.parent_id) ";

/// A role's permissions with every ancestor's.
pub async fn effective_permissions(
    conn: &mut AsyncPgConnection,
    role_id: Uuid,
) -> QueryResult<PermissionSet> {
    let mut found = effective_permissions_of(conn, &[role_id]).await?;
    Ok(found
        .remove(&role_id)
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Several roles' permissions with their ancestors', in one query (sorted).
pub async fn effective_permissions_of(
    conn: &mut AsyncPgConnection,
    role_ids: &[Uuid],
) -> QueryResult<HashMap<Uuid, Vec<String>>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        root: Uuid,
        #[diesel(sql_type = Text)]
        permission: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "WITH RECURSIVE chain (root, id, parent_id) AS ( \
           SELECT id, id, parent_id FROM roles WHERE id = ANY($1) \
           UNION SELECT c.root, r.id, r.parent_id FROM roles r JOIN chain c ON r.id = c.parent_id) \
         SELECT DISTINCT c.root, p.permission FROM chain c \
         JOIN role_permissions p ON p.role_id = c.id ORDER BY 1, 2",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(role_ids)
    .load(conn)
    .await?;
    let mut map: HashMap<Uuid, Vec<String>> = HashMap::new();
    for row in rows {
        map.entry(row.root).or_default().push(row.permission);
    }
    Ok(map)
}

/// Every permission of `role_id` and of every role that inherits from it,
/// each with its own ancestors: what changing or deleting `role_id` touches.
pub async fn permissions_affected_by(
    conn: &mut AsyncPgConnection,
    role_id: Uuid,
) -> QueryResult<PermissionSet> {
    let sql = "WITH RECURSIVE down (id) AS ( \
           SELECT id FROM roles WHERE id = $1 \
           UNION SELECT r.id FROM roles r JOIN down d ON r.parent_id = d.id), \
         up (id, parent_id) AS ( \
           SELECT id, parent_id FROM roles WHERE id IN (SELECT id FROM down) \
           UNION SELECT r.id, r.parent_id FROM roles r JOIN up u ON r.id = u.parent_id) \
         SELECT DISTINCT p.permission FROM role_permissions p JOIN up u ON u.id = p.role_id";
    permission_query(conn, sql, role_id).await
}

/// Whether `ancestor` is `role` or one of its ancestors.
async fn is_ancestor_or_self(
    conn: &mut AsyncPgConnection,
    ancestor: Uuid,
    role: Uuid,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let row: Row = diesel::sql_query(format!(
        "{CHAIN_UP} SELECT EXISTS (SELECT 1 FROM chain WHERE id = $2) AS found"
    ))
    .bind::<SqlUuid, _>(role)
    .bind::<SqlUuid, _>(ancestor)
    .get_result(conn)
    .await?;
    Ok(row.found)
}

/// A custom role's fields, checked.
#[derive(Debug, Clone)]
pub struct RoleFields {
    pub name: String,
    pub description: String,
    pub parent_id: Option<Uuid>,
    pub permissions: Vec<&'static str>,
}

/// Checks a role key: like a slug, 2 to 40 characters of `a-z 0-9 _ -`.
pub fn parse_key(raw: &str) -> AppResult<String> {
    let key = raw.trim();
    let mut chars = key.chars();
    let ok = (2..=40).contains(&key.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(key.to_owned())
    } else {
        Err(AppError::bad_input(
            "key",
            "a role key is 2 to 40 characters: a lowercase letter, then lowercase letters, digits, '_' or '-'",
        ))
    }
}

/// Creates a custom role.
pub async fn create(
    conn: &mut AsyncPgConnection,
    key: &str,
    fields: &RoleFields,
) -> AppResult<Role> {
    let now = Utc::now();
    let role: Role = diesel::insert_into(roles::table)
        .values((
            roles::id.eq(Uuid::now_v7()),
            roles::key.eq(key),
            roles::name.eq(&fields.name),
            roles::description.eq(&fields.description),
            roles::parent_id.eq(fields.parent_id),
            roles::builtin.eq(false),
            roles::created_at.eq(now),
            roles::updated_at.eq(now),
        ))
        .returning(Role::as_returning())
        .get_result(conn)
        .await?;
    set_permissions(conn, role.id, &fields.permissions).await?;
    Ok(role)
}

/// Changes a custom role (built-in roles are refused).
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    fields: &RoleFields,
) -> AppResult<Role> {
    let current = find(conn, id)
        .await?
        .ok_or_else(|| AppError::not_found(Some("id"), "no such role"))?;
    if current.builtin {
        return Err(AppError::bad_input(
            "id",
            "built-in roles cannot be changed; make a custom role that inherits from it",
        ));
    }
    // Two re-parentings at once could each pass the check and together
    // make a cycle: they take turns.
    conn.batch_execute("LOCK TABLE roles IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    if let Some(parent) = fields.parent_id
        && is_ancestor_or_self(conn, id, parent).await?
    {
        return Err(AppError::bad_input(
            "parentId",
            "a role cannot inherit from itself or from one of its own descendants",
        ));
    }
    let role = diesel::update(roles::table.find(id))
        .set((
            roles::name.eq(&fields.name),
            roles::description.eq(&fields.description),
            roles::parent_id.eq(fields.parent_id),
            roles::updated_at.eq(Utc::now()),
        ))
        .returning(Role::as_returning())
        .get_result(conn)
        .await?;
    diesel::delete(role_permissions::table.filter(role_permissions::role_id.eq(id)))
        .execute(conn)
        .await?;
    set_permissions(conn, id, &fields.permissions).await?;
    Ok(role)
}

async fn set_permissions(
    conn: &mut AsyncPgConnection,
    role: Uuid,
    permissions: &[&'static str],
) -> QueryResult<()> {
    let rows: Vec<_> = permissions
        .iter()
        .map(|p| {
            (
                role_permissions::role_id.eq(role),
                role_permissions::permission.eq(*p),
            )
        })
        .collect();
    diesel::insert_into(role_permissions::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes a custom role that nobody holds, no open invitation offers and
/// no role inherits from.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<()> {
    let role = find(conn, id)
        .await?
        .ok_or_else(|| AppError::not_found(Some("id"), "no such role"))?;
    if role.builtin {
        return Err(AppError::bad_input(
            "id",
            "built-in roles cannot be deleted",
        ));
    }
    let held: i64 = role_assignments::table
        .filter(role_assignments::role_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let children: i64 = roles::table
        .filter(roles::parent_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let offered: i64 = {
        use crate::db::schema::tenant::invitations as i;
        i::table
            .filter(i::role_id.eq(id))
            .filter(i::accepted_at.is_null())
            .filter(i::revoked_at.is_null())
            .filter(i::expires_at.gt(Utc::now()))
            .count()
            .get_result(conn)
            .await?
    };
    if held > 0 || children > 0 || offered > 0 {
        return Err(AppError::conflict(
            "id",
            format!(
                "the role is held by {held} user(s), inherited by {children} role(s) and offered \
                 by {offered} open invitation(s); unassign, re-parent or revoke them first"
            ),
        ));
    }
    diesel::delete(roles::table.find(id)).execute(conn).await?;
    Ok(())
}

/// The roles held by each of `users` (expired assignments included, with
/// their expiry, so a dashboard can show them).
pub async fn assignments_of(
    conn: &mut AsyncPgConnection,
    user_ids: &[Uuid],
) -> QueryResult<Vec<Assignment>> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>, Role)> = role_assignments::table
        .inner_join(roles::table)
        .filter(role_assignments::user_id.eq_any(user_ids))
        .select((
            role_assignments::user_id,
            role_assignments::expires_at,
            Role::as_select(),
        ))
        .order((role_assignments::user_id, roles::key))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, expires_at, role)| Assignment {
            user_id,
            role,
            expires_at,
        })
        .collect())
}

/// Gives `user` the role (or changes when it expires).
pub async fn assign(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role: Uuid,
    expires_at: Option<DateTime<Utc>>,
    granted_by: Option<Uuid>,
) -> QueryResult<()> {
    diesel::insert_into(role_assignments::table)
        .values((
            role_assignments::user_id.eq(user),
            role_assignments::role_id.eq(role),
            role_assignments::expires_at.eq(expires_at),
            role_assignments::granted_by.eq(granted_by),
        ))
        .on_conflict((role_assignments::user_id, role_assignments::role_id))
        .do_update()
        .set((
            role_assignments::expires_at.eq(expires_at),
            role_assignments::granted_by.eq(granted_by),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Takes the role from `user`; false when they did not hold it.
pub async fn unassign(conn: &mut AsyncPgConnection, user: Uuid, role: Uuid) -> QueryResult<bool> {
    diesel::delete(
        role_assignments::table
            .filter(role_assignments::user_id.eq(user))
            .filter(role_assignments::role_id.eq(role)),
    )
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Refuses a change that would leave the tenant without an owner: an
/// enabled user holding `owner` with no expiry, other than `leaving`.
/// Locks the owner role's row first, so two such changes run one at a time
/// and the second sees the first.
pub async fn keep_an_owner(conn: &mut AsyncPgConnection, leaving: Uuid) -> AppResult<()> {
    let owner: Uuid = roles::table
        .filter(roles::key.eq(builtin::OWNER))
        .select(roles::id)
        .for_update()
        .first(conn)
        .await?;
    let others: i64 = role_assignments::table
        .inner_join(users::table)
        .filter(role_assignments::role_id.eq(owner))
        .filter(role_assignments::expires_at.is_null())
        .filter(users::disabled_at.is_null())
        .filter(role_assignments::user_id.ne(leaving))
        .count()
        .get_result(conn)
        .await?;
    if others == 0 {
        return Err(AppError::Conflict {
            message: "this is the tenant's last owner: make someone else owner first".into(),
            field: Some("userId"),
        });
    }
    Ok(())
}

/// Whether `user` holds the owner role with no expiry.
pub async fn is_permanent_owner(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<bool> {
    let n: i64 = role_assignments::table
        .inner_join(roles::table)
        .filter(roles::key.eq(builtin::OWNER))
        .filter(role_assignments::user_id.eq(user))
        .filter(role_assignments::expires_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}
