//! Per-request DataLoaders: one query per kind of lookup, however many rows
//! ask. Each batch is a step of the request's tenant work: in a query, the
//! request's shared transaction; in a mutation, a transaction of its own.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::schema::tenant::tasks as tasks_table;
use crate::domain::projects::Project;
use crate::domain::roles::{self, Assignment, Role};
use crate::domain::tasks::{self, Task};
use crate::domain::teams::{self, Team};
use crate::domain::users::{self, User};
use crate::error::AppError;
use crate::in_scope;
use crate::tenancy::conn::TenantWork;

/// Runs one batch as a step of the request's tenant work; errors are
/// shared between the batch's waiters.
macro_rules! batch {
    ($loader:expr, |$conn:ident| $body:expr) => {
        async { in_scope!($loader.work, |$conn| $body) }
            .await
            .map_err(Arc::new)?
    };
}

/// Loads rows of one tenant.
pub struct TenantLoader {
    work: TenantWork,
    users: Arc<PrefetchedUsers>,
}

impl TenantLoader {
    /// A loader for one tenant's schema, under its role, which leaves the
    /// assignees it fetches with task pages in `users`.
    pub fn new(work: TenantWork, users: Arc<PrefetchedUsers>) -> Self {
        Self { work, users }
    }
}

/// Users by id, in a map whose hash is quicker than the standard one's for
/// keys the server made (a page looks its assignees up a few hundred times).
pub type UserMap = HashMap<Uuid, User, foldhash::fast::RandomState>;

/// Users fetched with a page of tasks, their assignees, in the same step,
/// so that a dashboard listing tasks with their assignee does not go through
/// the loader once per task.
#[derive(Debug, Default)]
pub struct PrefetchedUsers(std::sync::Mutex<UserMap>);

impl PrefetchedUsers {
    /// The user with `id`, if fetched.
    pub fn get(&self, id: Uuid) -> Option<User> {
        self.lock().get(&id).cloned()
    }

    /// The users with these ids (repeats allowed) that were fetched, and
    /// the ids that were not.
    pub fn several(&self, ids: &[Uuid]) -> (UserMap, Vec<Uuid>) {
        let fetched = self.lock();
        let (mut found, mut missing) = (UserMap::default(), Vec::new());
        for id in ids {
            if found.contains_key(id) || missing.contains(id) {
                continue;
            }
            match fetched.get(id) {
                Some(user) => {
                    found.insert(*id, user.clone());
                }
                None => missing.push(*id),
            }
        }
        (found, missing)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UserMap> {
        lock(&self.0)
    }
}

/// Batches of one kind of key gathered within one poll of the request,
/// with no timer: the fields of one list (each project's `tasks` on a
/// dashboard) are polled one after another in the same pass of the
/// request's task, and each adds its key, then yields once. The first to
/// run again fetches every key added so far, in one statement; keys asked
/// after that start the next batch.
///
/// The [`DataLoader`](async_graphql::dataloader::DataLoader) instead waits
/// on a timer for the keys to gather. Tokio's timer ticks every
/// millisecond, so that wait is 0.1-1.1 ms, on a request that takes about
/// one (BENCHMARKS.md, "Batches without a timer"). Fields polled in another
/// pass (reached after another await) get a batch of their own: one more
/// statement, the same answers.
pub struct PollBatches<K, V> {
    open: std::sync::Mutex<Option<Arc<PollBatch<K, V>>>>,
}

struct PollBatch<K, V> {
    /// The keys asked, once per asker.
    keys: std::sync::Mutex<Vec<K>>,
    /// What the fetch found.
    found: tokio::sync::OnceCell<Result<std::sync::Mutex<Found<K, V>>, LoadError>>,
}

/// Each value found, with the number of askers yet to take it: the last
/// takes it, the others a copy.
type Found<K, V> = HashMap<K, (V, usize)>;

impl<K, V> Default for PollBatches<K, V> {
    fn default() -> Self {
        Self {
            open: std::sync::Mutex::new(None),
        }
    }
}

impl<K, V> PollBatches<K, V>
where
    K: Copy + Eq + std::hash::Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The value for `key` that `loader` finds (`None`: not found), fetched
    /// with the keys the request's other fields ask in the same poll.
    pub async fn load_one<L>(&self, loader: &L, key: K) -> Result<Option<V>, LoadError>
    where
        L: Loader<K, Value = V, Error = LoadError>,
    {
        let batch = {
            let mut open = lock(&self.open);
            let batch = open.get_or_insert_with(|| {
                Arc::new(PollBatch {
                    keys: std::sync::Mutex::new(Vec::new()),
                    found: tokio::sync::OnceCell::new(),
                })
            });
            lock(&batch.keys).push(key);
            batch.clone()
        };
        // The fields polled after this one in the same pass add their keys.
        tokio::task::yield_now().await;
        let found = batch
            .found
            .get_or_init(|| async {
                // Closed: a key asked from now on starts the next batch.
                {
                    let mut open = lock(&self.open);
                    if open.as_ref().is_some_and(|o| Arc::ptr_eq(o, &batch)) {
                        *open = None;
                    }
                }
                // Copied, not taken: should this fetch be dropped half-way
                // (its field's list failed), the next asker fetches again,
                // and must find every key still there.
                let keys = lock(&batch.keys).clone();
                let mut askers: HashMap<K, usize> = HashMap::with_capacity(keys.len());
                for key in &keys {
                    *askers.entry(*key).or_default() += 1;
                }
                let unique: Vec<K> = askers.keys().copied().collect();
                let values = loader.load(&unique).await?;
                Ok(std::sync::Mutex::new(
                    values
                        .into_iter()
                        .map(|(key, value)| {
                            let n = askers.get(&key).copied().unwrap_or(1);
                            (key, (value, n))
                        })
                        .collect(),
                ))
            })
            .await;
        let mut found = lock(found.as_ref().map_err(Arc::clone)?);
        let left = match found.get_mut(&key) {
            None => return Ok(None),
            Some((_, left)) => {
                *left = left.saturating_sub(1);
                *left
            }
        };
        Ok(if left == 0 {
            found.remove(&key).map(|(value, _)| value)
        } else {
            found.get(&key).map(|(value, _)| value.clone())
        })
    }
}

/// A lock whose data a panic cannot leave half-changed.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loader errors are shared between every waiter of a batch.
pub type LoadError = Arc<AppError>;

/// A user, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(pub Uuid);

/// A project, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectKey(pub Uuid);

/// One page of one project's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectTasksKey {
    pub project_id: Uuid,
    pub status: Option<&'static str>,
    pub after: Option<Uuid>,
    /// Rows wanted, one more than the page size (to know if more follow).
    pub limit: i64,
    /// Whether to fetch the tasks' assignees along (into [`PrefetchedUsers`]).
    pub assignees: bool,
}

/// How many tasks a project has (optionally of one status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectTaskCountKey {
    pub project_id: Uuid,
    pub status: Option<&'static str>,
}

impl Loader<UserKey> for TenantLoader {
    type Value = User;
    type Error = LoadError;

    async fn load(&self, keys: &[UserKey]) -> Result<HashMap<UserKey, User>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = batch!(self, |conn| Ok(users::find_many(conn, &ids).await?));
        Ok(rows.into_iter().map(|u| (UserKey(u.id), u)).collect())
    }
}

impl Loader<ProjectKey> for TenantLoader {
    type Value = Project;
    type Error = LoadError;

    async fn load(&self, keys: &[ProjectKey]) -> Result<HashMap<ProjectKey, Project>, LoadError> {
        use crate::db::schema::tenant::projects as p;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows: Vec<Project> = batch!(self, |conn| Ok(p::table
            .filter(p::id.eq_any(&ids))
            .select(Project::as_select())
            .load(conn)
            .await?));
        Ok(rows.into_iter().map(|p| (ProjectKey(p.id), p)).collect())
    }
}

/// A page's shape: (status filter, after id, rows wanted, assignees along).
type PageShape = (Option<&'static str>, Option<Uuid>, i64, bool);

impl Loader<ProjectTasksKey> for TenantLoader {
    type Value = Vec<Task>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProjectTasksKey],
    ) -> Result<HashMap<ProjectTasksKey, Vec<Task>>, LoadError> {
        // Keys asking for the same page shape share one statement; a normal
        // dashboard query has exactly one shape.
        let mut shapes: HashMap<PageShape, Vec<Uuid>> = HashMap::new();
        for key in keys {
            shapes
                .entry((key.status, key.after, key.limit, key.assignees))
                .or_default()
                .push(key.project_id);
        }
        let (found, users) = batch!(self, |conn| {
            let mut out = HashMap::new();
            let mut assignees = Vec::new();
            for (&(status, after, limit, with_assignees), ids) in &shapes {
                let rows = tasks::for_projects(conn, ids, status, after, limit).await?;
                let key = |project_id| ProjectTasksKey {
                    project_id,
                    status,
                    after,
                    limit,
                    assignees: with_assignees,
                };
                for id in ids {
                    out.insert(key(*id), Vec::new());
                }
                // A project's rows come together: each run of them is
                // looked up once, not once per row.
                let mut run: Option<(Uuid, Vec<Task>)> = None;
                for task in rows {
                    if with_assignees {
                        assignees.extend(task.assignee_id);
                    }
                    match &mut run {
                        Some((project, tasks)) if *project == task.project_id => tasks.push(task),
                        _ => {
                            if let Some((project, tasks)) = run.take() {
                                append(&mut out, key(project), tasks);
                            }
                            run = Some((task.project_id, vec![task]));
                        }
                    }
                }
                if let Some((project, tasks)) = run {
                    append(&mut out, key(project), tasks);
                }
            }
            assignees.sort_unstable();
            assignees.dedup();
            let users = if assignees.is_empty() {
                Vec::new()
            } else {
                users::find_many(conn, &assignees).await?
            };
            Ok((out, users))
        });
        if !users.is_empty() {
            let mut map = self.users.lock();
            map.extend(users.into_iter().map(|u| (u.id, u)));
        }
        Ok(found)
    }
}

/// Adds a run of a project's rows to its page.
fn append(out: &mut HashMap<ProjectTasksKey, Vec<Task>>, key: ProjectTasksKey, rows: Vec<Task>) {
    let page = out.entry(key).or_default();
    if page.is_empty() {
        *page = rows;
    } else {
        page.extend(rows);
    }
}

impl Loader<ProjectTaskCountKey> for TenantLoader {
    type Value = i64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProjectTaskCountKey],
    ) -> Result<HashMap<ProjectTaskCountKey, i64>, LoadError> {
        let mut by_status: HashMap<Option<&'static str>, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_status
                .entry(key.status)
                .or_default()
                .push(key.project_id);
        }
        let counts = batch!(self, |conn| {
            let mut out = HashMap::new();
            for (status, ids) in &by_status {
                let mut query = tasks_table::table
                    .filter(tasks_table::project_id.eq_any(ids))
                    .group_by(tasks_table::project_id)
                    .select((tasks_table::project_id, diesel::dsl::count_star()))
                    .into_boxed();
                if let Some(status) = status {
                    query = query.filter(tasks_table::status.eq(*status));
                }
                let rows: Vec<(Uuid, i64)> = query.load(conn).await?;
                let found: HashMap<Uuid, i64> = rows.into_iter().collect();
                for id in ids {
                    out.insert(
                        ProjectTaskCountKey {
                            project_id: *id,
                            status: *status,
                        },
                        found.get(id).copied().unwrap_or(0),
                    );
                }
            }
            Ok(out)
        });
        Ok(counts)
    }
}

/// The roles a user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserRolesKey(pub Uuid);

/// A role, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleKey(pub Uuid);

/// A role's own permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RolePermissionsKey(pub Uuid);

/// A role's permissions with its ancestors'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleEffectiveKey(pub Uuid);

/// A team, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamKey(pub Uuid);

/// A team's direct sub-teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamChildrenKey(pub Uuid);

/// A team's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamMembersKey(pub Uuid);

/// Groups `rows` under the keys asked for (every key gets an entry).
fn group<K, V>(keys: &[K], rows: impl IntoIterator<Item = (K, V)>) -> HashMap<K, Vec<V>>
where
    K: std::hash::Hash + Eq + Copy,
{
    let mut out: HashMap<K, Vec<V>> = keys.iter().map(|k| (*k, Vec::new())).collect();
    for (k, v) in rows {
        out.entry(k).or_default().push(v);
    }
    out
}

impl Loader<UserRolesKey> for TenantLoader {
    type Value = Vec<Assignment>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[UserRolesKey],
    ) -> Result<HashMap<UserRolesKey, Vec<Assignment>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = batch!(self, |conn| Ok(roles::assignments_of(conn, &ids).await?));
        Ok(group(
            keys,
            rows.into_iter().map(|a| (UserRolesKey(a.user_id), a)),
        ))
    }
}

impl Loader<RoleKey> for TenantLoader {
    type Value = Role;
    type Error = LoadError;

    async fn load(&self, keys: &[RoleKey]) -> Result<HashMap<RoleKey, Role>, LoadError> {
        use crate::db::schema::tenant::roles as r;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows: Vec<Role> = batch!(self, |conn| Ok(r::table
            .filter(r::id.eq_any(&ids))
            .select(Role::as_select())
            .load(conn)
            .await?));
        Ok(rows.into_iter().map(|r| (RoleKey(r.id), r)).collect())
    }
}

impl Loader<RolePermissionsKey> for TenantLoader {
    type Value = Vec<String>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[RolePermissionsKey],
    ) -> Result<HashMap<RolePermissionsKey, Vec<String>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let map = batch!(self, |conn| Ok(roles::own_permissions(conn, &ids).await?));
        Ok(keys
            .iter()
            .map(|k| (*k, map.get(&k.0).cloned().unwrap_or_default()))
            .collect())
    }
}

impl Loader<RoleEffectiveKey> for TenantLoader {
    type Value = Vec<String>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[RoleEffectiveKey],
    ) -> Result<HashMap<RoleEffectiveKey, Vec<String>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let map = batch!(self, |conn| Ok(
            roles::effective_permissions_of(conn, &ids).await?
        ));
        Ok(keys
            .iter()
            .map(|k| (*k, map.get(&k.0).cloned().unwrap_or_default()))
            .collect())
    }
}

impl Loader<TeamKey> for TenantLoader {
    type Value = Team;
    type Error = LoadError;

    async fn load(&self, keys: &[TeamKey]) -> Result<HashMap<TeamKey, Team>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = batch!(self, |conn| Ok(teams::find_many(conn, &ids).await?));
        Ok(rows.into_iter().map(|t| (TeamKey(t.id), t)).collect())
    }
}

impl Loader<TeamChildrenKey> for TenantLoader {
    type Value = Vec<Team>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[TeamChildrenKey],
    ) -> Result<HashMap<TeamChildrenKey, Vec<Team>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = batch!(self, |conn| Ok(teams::children_of(conn, &ids).await?));
        Ok(group(
            keys,
            rows.into_iter()
                .filter_map(|t| t.parent_id.map(|p| (TeamChildrenKey(p), t))),
        ))
    }
}

impl Loader<TeamMembersKey> for TenantLoader {
    type Value = Vec<User>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[TeamMembersKey],
    ) -> Result<HashMap<TeamMembersKey, Vec<User>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = batch!(self, |conn| Ok(teams::members_of(conn, &ids).await?));
        Ok(group(
            keys,
            rows.into_iter().map(|(t, u)| (TeamMembersKey(t), u)),
        ))
    }
}

/// Turns a shared loader error back into a GraphQL error.
pub fn load_error(err: LoadError) -> async_graphql::Error {
    match Arc::try_unwrap(err) {
        Ok(err) => err.into(),
        Err(shared) => {
            let code = shared.code();
            if code == "INTERNAL_SERVER_ERROR" {
                tracing::error!(error = ?shared, "loader failed");
            }
            use async_graphql::ErrorExtensions as _;
            let message = if code == "INTERNAL_SERVER_ERROR" {
                "internal server error".to_owned()
            } else {
                shared.to_string()
            };
            async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Squares its keys, each fetch waiting at a gate while `gated`, and
    /// records the keys of every fetch.
    struct Squares {
        gated: bool,
        gate: tokio::sync::Semaphore,
        fetches: std::sync::Mutex<Vec<Vec<u32>>>,
    }

    impl Squares {
        fn new(gated: bool) -> Self {
            Self {
                gated,
                gate: tokio::sync::Semaphore::new(0),
                fetches: std::sync::Mutex::default(),
            }
        }
    }

    impl Loader<u32> for Squares {
        type Value = u32;
        type Error = LoadError;

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, LoadError> {
            let mut sorted = keys.to_vec();
            sorted.sort_unstable();
            lock(&self.fetches).push(sorted);
            if self.gated {
                let _pass = self.gate.acquire().await;
            }
            // Key 0 is one the database does not have.
            Ok(keys
                .iter()
                .filter(|&&k| k != 0)
                .map(|&k| (k, k * k))
                .collect())
        }
    }

    #[tokio::test]
    async fn keys_asked_in_one_poll_are_fetched_once_and_each_asker_gets_its_value() {
        let loader = Squares::new(false);
        let batches = PollBatches::default();
        let asks = [3, 1, 3, 0, 2].map(|key| batches.load_one(&loader, key));
        let got: Vec<_> = futures::future::join_all(asks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, [Some(9), Some(1), Some(9), None, Some(4)]);
        assert_eq!(*lock(&loader.fetches), [vec![0, 1, 2, 3]]);
        // A key asked after the batch closed starts another.
        assert_eq!(batches.load_one(&loader, 5).await.unwrap(), Some(25));
        assert_eq!(lock(&loader.fetches).len(), 2);
    }

    #[tokio::test]
    async fn a_fetch_dropped_half_way_is_fetched_again_with_every_key() {
        let loader = Squares::new(true);
        let batches = PollBatches::default();
        let mut first = Box::pin(batches.load_one(&loader, 1));
        let mut second = Box::pin(batches.load_one(&loader, 2));
        // Both add their keys and yield; then the first starts the fetch,
        // which waits at the gate, and is dropped there.
        assert!(futures::poll!(&mut first).is_pending());
        assert!(futures::poll!(&mut second).is_pending());
        assert!(futures::poll!(&mut first).is_pending());
        assert_eq!(lock(&loader.fetches).len(), 1);
        drop(first);
        loader.gate.add_permits(1);
        assert_eq!(second.await.unwrap(), Some(4));
        assert_eq!(*lock(&loader.fetches), [vec![1, 2], vec![1, 2]]);
    }
}
