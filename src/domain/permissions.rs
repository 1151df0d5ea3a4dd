//! The permission catalogue and what a principal may do.
//!
//! Permissions are `resource:action` pairs. Roles hold permissions and may
//! inherit a parent role's; a user holds roles (each assignment may expire);
//! an API key holds a chosen subset and never more than its owner has now.

use std::collections::BTreeSet;

use diesel::sql_types::{Array, Bool, Nullable, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension as _, QueryResult};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;

/// Every permission there is, with what it allows.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("projects:read", "See projects."),
    ("projects:write", "Create, change and delete projects."),
    ("tasks:read", "See tasks."),
    ("tasks:write", "Create, change and delete tasks."),
    ("members:read", "See the tenant's users, roles and teams."),
    (
        "members:manage",
        "Create, invite, disable and change users; assign roles; end others' sessions.",
    ),
    ("roles:manage", "Create, change and delete custom roles."),
    (
        "teams:manage",
        "Create, change and delete teams and their members.",
    ),
    ("apikeys:create", "Make and revoke one's own API keys."),
    ("apikeys:manage", "See and revoke everyone's API keys."),
    ("billing:read", "See the plan and its usage."),
    ("audit:read", "Read the audit trail."),
];

/// Checks that `name` is in the catalogue.
pub fn parse(name: &str, field: &'static str) -> AppResult<&'static str> {
    CATALOGUE
        .iter()
        .map(|(p, _)| *p)
        .find(|p| *p == name)
        .ok_or_else(|| {
            AppError::bad_input(
                field,
                format!("no permission '{name}'; see the `permissions` query for the catalogue"),
            )
        })
}

/// A set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<String>);

impl PermissionSet {
    /// Every permission in the catalogue (the platform admin's).
    pub fn all() -> Self {
        Self(CATALOGUE.iter().map(|(p, _)| (*p).to_owned()).collect())
    }

    /// Whether `permission` is in the set.
    pub fn has(&self, permission: &str) -> bool {
        self.0.contains(permission)
    }

    /// Whether every permission of `other` is in this set.
    pub fn covers(&self, other: &PermissionSet) -> bool {
        other.0.is_subset(&self.0)
    }

    /// The permissions in both sets.
    pub fn intersect(&self, other: &PermissionSet) -> Self {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The permissions, sorted.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl FromIterator<String> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// The recursive part every "effective permissions" query shares: the roles
/// user `$1` holds now, and their ancestors, each marked permanent when it
/// comes from an assignment without an end date. `UNION` (not `UNION ALL`)
/// ends the walk even if a cycle were ever stored. `s` qualifies the
/// tables: `""` for the search_path, or a quoted schema and a dot.
fn granted_roles(s: &str) -> String {
    format!(
        "granted (id, parent_id, permanent) AS ( \
            SELECT r.id, r.parent_id, a.expires_at IS NULL \
            FROM {s}role_assignments a JOIN {s}roles r ON r.id = a.role_id \
            WHERE a.user_id = $1 AND (a.expires_at IS NULL OR a.expires_at > now()) \
            UNION SELECT r.id, r.parent_id, g.permanent FROM {s}roles r JOIN granted g ON r.id = g.parent_id)"
    )
}

/// Selects the `permissions` (all granted now) and `permanent` (granted by
/// assignments without an end date) arrays from `granted`.
fn permission_arrays(s: &str) -> String {
    format!(
        "ARRAY(SELECT DISTINCT p.permission FROM {s}role_permissions p \
               JOIN granted g ON g.id = p.role_id) AS permissions, \
         ARRAY(SELECT DISTINCT p.permission FROM {s}role_permissions p \
               JOIN granted g ON g.id = p.role_id WHERE g.permanent) AS permanent"
    )
}

/// What a signed-in user's request may do, checked on its first use.
#[derive(Debug, Clone)]
pub struct UserAccess {
    /// The user exists and is not disabled.
    pub enabled: bool,
    /// The session exists, is not revoked and has not expired.
    pub session_live: bool,
    /// Effective permissions now.
    pub permissions: PermissionSet,
    /// The part of them that does not expire.
    pub permanent: PermissionSet,
}

#[derive(diesel::QueryableByName)]
struct SessionRow {
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    live: bool,
    #[diesel(sql_type = Array<Text>)]
    permissions: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    permanent: Vec<String>,
}

impl From<SessionRow> for UserAccess {
    fn from(row: SessionRow) -> Self {
        UserAccess {
            enabled: row.enabled,
            session_live: row.live,
            permissions: row.permissions.into_iter().collect(),
            permanent: row.permanent.into_iter().collect(),
        }
    }
}

/// The credential check's statement; `s` qualifies the tables. The
/// placeholders: `$1` the user (in [`granted_roles`]), `$2` the user, `$3`
/// the session, `$4` the user.
fn session_access_sql(s: &str) -> String {
    format!(
        "WITH RECURSIVE {} SELECT \
           EXISTS (SELECT 1 FROM {s}users WHERE id = $2 AND disabled_at IS NULL) AS enabled, \
           EXISTS (SELECT 1 FROM {s}sessions WHERE id = $3 AND user_id = $4 \
                   AND revoked_at IS NULL AND expires_at > now()) AS live, \
           {}",
        granted_roles(s),
        permission_arrays(s)
    )
}

/// The credential check for a connection bound to the tenant: the same
/// text for every tenant, so it stays prepared (see [`crate::db::cached`]).
static SESSION_ACCESS_BOUND: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| session_access_sql(""));

/// Loads a user's status, their session's and their permissions in one
/// statement, on a connection that is in no transaction.
///
/// A mutation's requests run this first, so it is kept to one statement: the
/// tables are named with the tenant's schema (built from a validated slug)
/// instead of a search_path bound in a transaction, which saves the
/// `BEGIN`+binding and `COMMIT` round trips. It runs as the server's own
/// user, not the tenant's role: it is this fixed query, never a
/// resolver's, and reads only that schema. (A query's requests use
/// [`for_session_bound`] in their shared transaction instead.)
pub async fn for_session(
    conn: &mut AsyncPgConnection,
    schema: &TenantSlug,
    user: Uuid,
    session: Uuid,
) -> QueryResult<UserAccess> {
    let s = format!("{}.", schema.quoted_schema());
    let row: SessionRow = diesel::sql_query(session_access_sql(&s))
        .bind::<SqlUuid, _>(user)
        .bind::<SqlUuid, _>(user)
        .bind::<SqlUuid, _>(session)
        .bind::<SqlUuid, _>(user)
        .get_result(conn)
        .await?;
    Ok(row.into())
}

/// [`for_session`] on a connection bound to the tenant (its search_path
/// and role), as the first statement of a query's transaction: one
/// prepared statement per connection serves every tenant.
pub async fn for_session_bound(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    session: Uuid,
) -> QueryResult<UserAccess> {
    let row: SessionRow =
        crate::db::cached::cached(SESSION_ACCESS_BOUND.as_str(), (user, user, session, user))
            .get_result(conn)
            .await?;
    Ok(row.into())
}

/// The text [`for_session_bound`] sends (`$1`, `$2` and `$4` the user, `$3`
/// the session), for the benchmark that replays a request's SQL.
pub fn session_access_bound_sql() -> &'static str {
    SESSION_ACCESS_BOUND.as_str()
}

/// A user's effective permissions now, whether or not the user is disabled
/// (so a disabled owner still counts as an owner when someone would act on them).
pub async fn of_user(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<PermissionSet> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        permission: String,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "WITH RECURSIVE {} SELECT DISTINCT p.permission FROM role_permissions p \
         JOIN granted g ON g.id = p.role_id",
        granted_roles("")
    ))
    .bind::<SqlUuid, _>(user)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.permission).collect())
}

/// An API key found by its prefix, with its owner's state and permissions.
#[derive(Debug, Clone)]
pub struct KeyAccess {
    pub key_id: Uuid,
    pub owner: Uuid,
    pub secret_hash: Vec<u8>,
    /// Not revoked and not expired.
    pub live: bool,
    /// The owner exists and is not disabled.
    pub owner_enabled: bool,
    /// What the key was given, intersected with what its owner has now.
    pub permissions: PermissionSet,
    /// The part of that its owner holds without an end date.
    pub permanent: PermissionSet,
}

/// Loads the key with `prefix` and everything needed to judge it, in one query.
pub async fn for_api_key(
    conn: &mut AsyncPgConnection,
    prefix: &str,
) -> QueryResult<Option<KeyAccess>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        secret_hash: Vec<u8>,
        #[diesel(sql_type = Array<Text>)]
        permissions: Vec<String>,
        #[diesel(sql_type = Bool)]
        live: bool,
        #[diesel(sql_type = Bool)]
        enabled: bool,
        #[diesel(sql_type = Nullable<Array<Text>>)]
        owner_permissions: Option<Vec<String>>,
        #[diesel(sql_type = Nullable<Array<Text>>)]
        owner_permanent: Option<Vec<String>>,
    }
    // `$1` in granted_roles is the owner: found by a scalar subquery first.
    let row: Option<Row> = diesel::sql_query(format!(
        "WITH RECURSIVE k AS (SELECT * FROM api_keys WHERE prefix = $2), \
         owner AS (SELECT user_id AS id FROM k), \
         {} \
         SELECT k.id, k.user_id, k.secret_hash, k.permissions, \
           (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS live, \
           EXISTS (SELECT 1 FROM users u WHERE u.id = k.user_id AND u.disabled_at IS NULL) AS enabled, \
           ARRAY(SELECT DISTINCT p.permission FROM role_permissions p \
                 JOIN granted g ON g.id = p.role_id) AS owner_permissions, \
           ARRAY(SELECT DISTINCT p.permission FROM role_permissions p \
                 JOIN granted g ON g.id = p.role_id WHERE g.permanent) AS owner_permanent \
         FROM k",
        granted_roles("").replace("$1", "(SELECT id FROM owner)")
    ))
    .bind::<Text, _>(prefix)
    .bind::<Text, _>(prefix)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|r| {
        let given: PermissionSet = r.permissions.into_iter().collect();
        let owner: PermissionSet = r
            .owner_permissions
            .unwrap_or_default()
            .into_iter()
            .collect();
        let owner_permanent: PermissionSet =
            r.owner_permanent.unwrap_or_default().into_iter().collect();
        KeyAccess {
            permanent: given.intersect(&owner_permanent),
            key_id: r.id,
            owner: r.user_id,
            secret_hash: r.secret_hash,
            live: r.live,
            owner_enabled: r.enabled,
            permissions: given.intersect(&owner),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_are_resource_action_and_unique() {
        let mut seen = BTreeSet::new();
        for (name, what) in CATALOGUE {
            let (resource, action) = name.split_once(':').expect(name);
            assert!(!resource.is_empty() && !action.is_empty() && !what.is_empty());
            assert!(seen.insert(*name), "{name} twice");
        }
    }

    #[test]
    fn a_set_covers_its_subsets_only() {
        let all = PermissionSet::all();
        let some: PermissionSet = ["projects:read".to_owned()].into_iter().collect();
        assert!(all.covers(&some) && !some.covers(&all));
        assert_eq!(some.intersect(&all), some);
        assert!(parse("nope:nope", "p").is_err());
    }
}
