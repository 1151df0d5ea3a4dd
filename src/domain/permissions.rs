//! The permission catalogue and what a principal may do.
//!
//! Permissions are `resource:action` pairs. Roles hold permissions and may
//! inherit a parent role's; a user holds roles (each assignment may expire);
//! an API key holds a chosen subset and never more than its owner has now.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use diesel::sql_types::{Array, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
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
/// comes from an assignment without an end date, with the end date of the
/// assignment it comes from (`until`). `UNION` (not `UNION ALL`)
/// ends the walk even if a cycle were ever stored. `s` qualifies the
/// tables: `""` for the search_path, or a quoted schema and a dot.
fn granted_roles(s: &str) -> String {
    format!(
        "granted (id, parent_id, permanent, until) AS ( \
            SELECT r.id, r.parent_id, a.expires_at IS NULL, a.expires_at \
            FROM {s}role_assignments a JOIN {s}roles r ON r.id = a.role_id \
            WHERE a.user_id = $1 AND (a.expires_at IS NULL OR a.expires_at > now()) \
            UNION SELECT r.id, r.parent_id, g.permanent, g.until FROM {s}roles r JOIN granted g ON r.id = g.parent_id)"
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

/// The credential check's first statement, made on every request: the
/// user, the session, and the tenant's access version (see
/// `tenant_template/0003_access_version`). `s` qualifies the tables; the
/// placeholders: `$1` the user, `$2` the session, `$3` the user.
fn session_state_sql(s: &str) -> String {
    format!(
        "SELECT \
           EXISTS (SELECT 1 FROM {s}users WHERE id = $1 AND disabled_at IS NULL) AS enabled, \
           EXISTS (SELECT 1 FROM {s}sessions WHERE id = $2 AND user_id = $3 \
                   AND revoked_at IS NULL AND expires_at > now()) AS live, \
           (SELECT version FROM {s}access_version) AS version, \
           now() AS at"
    )
}

/// The credential check's second statement, made only when [`GrantCache`]
/// has nothing for the user at the version just read: the user's (`$1`)
/// effective permissions, the version they hold at (read in the same
/// snapshot), and when the first assignment they count ends.
fn granted_sql(s: &str) -> String {
    format!(
        "WITH RECURSIVE {} SELECT {}, \
           (SELECT version FROM {s}access_version) AS version, \
           (SELECT min(until) FROM granted) AS until",
        granted_roles(s),
        permission_arrays(s)
    )
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    live: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    version: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct GrantedRow {
    #[diesel(sql_type = Array<Text>)]
    permissions: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    permanent: Vec<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    version: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    until: Option<DateTime<Utc>>,
}

/// Most users' permissions a [`GrantCache`] keeps: about 100 bytes each.
const MAX_GRANTS: usize = 100_000;

/// Users' effective permissions, each kept with the tenant's access version
/// it was computed at.
///
/// Walking a user's roles is most of what a request's credential check
/// costs PostgreSQL, and over many tenants it is planned again on nearly
/// every request (its statement's plan holds one tenant's tables). Every
/// change to roles, their permissions or who holds them replaces the
/// tenant's access version in the same transaction, so permissions computed
/// at the version a request reads are exactly what the walk would give now,
/// on any server; until an assignment they count ends (`until`), after
/// which the walk is made again. Nothing is served on a version the request
/// has not just read, so there is no window in which a change is unseen.
#[derive(Debug, Default)]
pub struct GrantCache {
    map: Mutex<HashMap<(Uuid, Uuid), Grant>>,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    version: Uuid,
    until: Option<DateTime<Utc>>,
    permissions: u32,
    permanent: u32,
}

impl GrantCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), Grant>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user`'s permissions in `tenant`, if computed at `version` and none
    /// of the assignments counted had ended at `at` (the database's clock).
    fn get(
        &self,
        (tenant, user): (Uuid, Uuid),
        version: Uuid,
        at: DateTime<Utc>,
    ) -> Option<(PermissionSet, PermissionSet)> {
        // Copied out, so the lock is not held while the sets are built.
        let grant = *self.map().get(&(tenant, user))?;
        (grant.version == version && grant.until.is_none_or(|until| at < until)).then(|| {
            (
                PermissionSet::from_bits(grant.permissions),
                PermissionSet::from_bits(grant.permanent),
            )
        })
    }

    fn put(&self, key: (Uuid, Uuid), row: &GrantedRow) {
        // No version (the row was removed by hand): nothing to check a
        // later request against, so nothing is kept.
        let Some(version) = row.version else { return };
        let (Some(permissions), Some(permanent)) =
            (bits_of(&row.permissions), bits_of(&row.permanent))
        else {
            // A permission outside the catalogue (written by hand) is kept
            // only by walking the roles each time, as before.
            return;
        };
        let mut map = self.map();
        if map.len() >= MAX_GRANTS && !map.contains_key(&key) {
            // A tenth go (whichever come first): one burst of new users
            // does not empty the cache.
            let gone: Vec<(Uuid, Uuid)> = map.keys().take(MAX_GRANTS / 10).copied().collect();
            for k in gone {
                map.remove(&k);
            }
        }
        map.insert(
            key,
            Grant {
                version,
                until: row.until,
                permissions,
                permanent,
            },
        );
    }
}

// A kept permission set is a bit per catalogue entry.
const _: () = assert!(CATALOGUE.len() <= 32);

/// The catalogue positions of `permissions`, or `None` if one is not in it.
fn bits_of(permissions: &[String]) -> Option<u32> {
    permissions.iter().try_fold(0u32, |bits, p| {
        let i = CATALOGUE.iter().position(|(name, _)| name == p)?;
        Some(bits | 1 << i)
    })
}

impl PermissionSet {
    fn from_bits(bits: u32) -> Self {
        CATALOGUE
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, (name, _))| (*name).to_owned())
            .collect()
    }
}

/// The statements for a connection bound to the tenant: the same text for
/// every tenant, so they stay prepared (see [`crate::db::cached`]).
static SESSION_STATE_BOUND: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| session_state_sql(""));
static GRANTED_BOUND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| granted_sql(""));

/// Loads a user's status, their session's and their permissions, on a
/// connection that is in no transaction.
///
/// A mutation's requests run this first: the tables are named with the
/// tenant's schema (built from a validated slug) instead of a search_path
/// bound in a transaction, which saves the `BEGIN`+binding and `COMMIT`
/// round trips. It runs as the server's own user, not the tenant's role: it
/// is these fixed queries, never a resolver's, and reads only that schema.
/// (A query's requests use [`for_session_bound`] in their shared
/// transaction instead.) `tenant` is the tenant's id, for `grants`.
pub async fn for_session(
    conn: &mut AsyncPgConnection,
    grants: &GrantCache,
    (tenant, schema): (Uuid, &TenantSlug),
    user: Uuid,
    session: Uuid,
) -> QueryResult<UserAccess> {
    let s = format!("{}.", schema.quoted_schema());
    let state: StateRow = diesel::sql_query(session_state_sql(&s))
        .bind::<SqlUuid, _>(user)
        .bind::<SqlUuid, _>(session)
        .bind::<SqlUuid, _>(user)
        .get_result(conn)
        .await?;
    access(grants, (tenant, user), state, || {
        diesel::sql_query(granted_sql(&s))
            .bind::<SqlUuid, _>(user)
            .get_result(conn)
    })
    .await
}

/// A user's status and their session's, read by [`session_state_bound`]
/// for [`for_session_bound`].
pub struct SessionState(StateRow);

/// The first statement of [`for_session`], on a connection bound to the
/// tenant (its search_path and role): the first statement of a query's
/// transaction, sent along with its binding (it takes a shared reference
/// for that).
pub async fn session_state_bound(
    mut conn: &AsyncPgConnection,
    user: Uuid,
    session: Uuid,
) -> QueryResult<SessionState> {
    crate::db::cached::cached(SESSION_STATE_BOUND.as_str(), (user, session, user))
        .get_result(&mut conn)
        .await
        .map(SessionState)
}

/// The rest of [`for_session`] on a connection bound to the tenant, after
/// [`session_state_bound`]: the permissions kept, or the roles walked again.
pub async fn for_session_bound(
    conn: &mut AsyncPgConnection,
    grants: &GrantCache,
    tenant: Uuid,
    user: Uuid,
    SessionState(state): SessionState,
) -> QueryResult<UserAccess> {
    access(grants, (tenant, user), state, || {
        crate::db::cached::cached(GRANTED_BOUND.as_str(), (user,)).get_result(conn)
    })
    .await
}

/// What `state` allows `key` (tenant, user): the kept permissions when they
/// may be used, otherwise `walk`'s, kept for next time. A disabled user or
/// an ended session needs none: the request is refused.
async fn access<F>(
    grants: &GrantCache,
    key: (Uuid, Uuid),
    state: StateRow,
    walk: impl FnOnce() -> F,
) -> QueryResult<UserAccess>
where
    F: Future<Output = QueryResult<GrantedRow>>,
{
    let kept = if state.enabled && state.live {
        state.version.and_then(|v| grants.get(key, v, state.at))
    } else {
        Some(Default::default())
    };
    let (permissions, permanent) = match kept {
        Some(kept) => kept,
        None => {
            let row = walk().await?;
            grants.put(key, &row);
            (
                row.permissions.into_iter().collect(),
                row.permanent.into_iter().collect(),
            )
        }
    };
    Ok(UserAccess {
        enabled: state.enabled,
        session_live: state.live,
        permissions,
        permanent,
    })
}

/// The texts [`for_session_bound`] sends: the statement every request makes
/// (`$1` and `$3` the user, `$2` the session), and the one made when
/// [`GrantCache`] has nothing at the version read (`$1` the user), for the
/// benchmark that replays a request's SQL.
pub fn session_access_bound_sql() -> (&'static str, &'static str) {
    (SESSION_STATE_BOUND.as_str(), GRANTED_BOUND.as_str())
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
    fn kept_permissions_round_trip_and_names_outside_the_catalogue_are_not_kept() {
        let all = PermissionSet::all();
        assert_eq!(
            PermissionSet::from_bits(bits_of(&all.to_vec()).unwrap()),
            all
        );
        let one = bits_of(&["tasks:read".to_owned()]).unwrap();
        assert_eq!(PermissionSet::from_bits(one).to_vec(), ["tasks:read"]);
        assert_eq!(
            bits_of(&["tasks:read".to_owned(), "tasks:fly".to_owned()]),
            None
        );
        let cache = GrantCache::default();
        let key = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(
            key,
            &row(Some(Uuid::nil()), vec!["tasks:fly".to_owned()], None),
        );
        assert!(cache.get(key, Uuid::nil(), Utc::now()).is_none());
        cache.put(key, &row(None, vec!["tasks:read".to_owned()], None));
        assert!(
            cache.get(key, Uuid::nil(), Utc::now()).is_none(),
            "no version"
        );
    }

    fn row(
        version: Option<Uuid>,
        permissions: Vec<String>,
        until: Option<DateTime<Utc>>,
    ) -> GrantedRow {
        GrantedRow {
            permanent: permissions.clone(),
            permissions,
            version,
            until,
        }
    }

    #[test]
    fn kept_permissions_serve_only_their_version_user_tenant_and_time() {
        let cache = GrantCache::default();
        let (tenant, user, version) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(60);
        cache.put(
            (tenant, user),
            &row(Some(version), vec!["tasks:read".to_owned()], Some(until)),
        );
        let (perms, _) = cache.get((tenant, user), version, now).expect("a hit");
        assert_eq!(perms.to_vec(), ["tasks:read"]);
        assert!(
            cache.get((tenant, user), Uuid::now_v7(), now).is_none(),
            "another version"
        );
        assert!(
            cache.get((Uuid::now_v7(), user), version, now).is_none(),
            "another tenant"
        );
        assert!(
            cache.get((tenant, Uuid::now_v7()), version, now).is_none(),
            "another user"
        );
        assert!(
            cache.get((tenant, user), version, until).is_none(),
            "an assignment ended"
        );
    }

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
