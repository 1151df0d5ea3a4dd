//! A tenant's tasks. Every function runs on a tenant-bound connection.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::dsl::{AsSelect, SqlTypeOf};
use diesel::pg::Pg;
use diesel::prelude::*;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::tenant::tasks;
use crate::error::{AppError, AppResult};

/// Task statuses, as stored.
pub const STATUSES: &[&str] = &["todo", "in_progress", "done"];

/// A task.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = tasks)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub status: String,
    pub assignee_id: Option<Uuid>,
    pub due_date: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Changes to a task; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChanges {
    pub title: Option<String>,
    pub status: Option<String>,
    pub assignee_id: Option<Option<Uuid>>,
    pub due_date: Option<Option<NaiveDate>>,
}

impl TaskChanges {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.status.is_none()
            && self.assignee_id.is_none()
            && self.due_date.is_none()
    }
}

/// Which tasks a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TaskFilter {
    pub project_id: Option<Uuid>,
    pub status: Option<&'static str>,
    pub assignee_id: Option<Uuid>,
}

/// Checks a task title: 1 to 500 characters after trimming.
pub fn parse_title(raw: &str) -> AppResult<String> {
    let title = raw.trim();
    if title.is_empty() || title.chars().count() > 500 || title.contains('\0') {
        return Err(AppError::bad_input(
            "title",
            "title must be 1 to 500 characters",
        ));
    }
    Ok(title.to_owned())
}

fn filtered(filter: &TaskFilter) -> tasks::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = tasks::table.into_boxed();
    if let Some(project) = filter.project_id {
        query = query.filter(tasks::project_id.eq(project));
    }
    if let Some(status) = filter.status {
        query = query.filter(tasks::status.eq(status));
    }
    if let Some(assignee) = filter.assignee_id {
        query = query.filter(tasks::assignee_id.eq(assignee));
    }
    query
}

/// Up to `first` tasks matching `filter` after the one with id `after`,
/// oldest first, and whether more follow.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &TaskFilter,
    first: i64,
    after: Option<Uuid>,
) -> QueryResult<(Vec<Task>, bool)> {
    let mut query = filtered(filter)
        .select(Task::as_select())
        .order(tasks::id.asc())
        .limit(first + 1);
    if let Some(after) = after {
        query = query.filter(tasks::id.gt(after));
    }
    let mut rows = query.load(conn).await?;
    let more = rows.len() as i64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// How many tasks match `filter`.
pub async fn count(conn: &mut AsyncPgConnection, filter: &TaskFilter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// For each project in `project_ids`, up to `limit` of its tasks (matching
/// `status`, after id `after`), oldest first: one statement for them all,
/// kept prepared on the connection (see [`crate::db::cached`]).
pub async fn for_projects(
    conn: &mut AsyncPgConnection,
    project_ids: &[Uuid],
    status: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Task>> {
    crate::db::cached::cached(
        "SELECT t.id, t.project_id, t.title, t.status, t.assignee_id, t.due_date, \
                t.created_at, t.updated_at \
         FROM unnest($1::uuid[]) AS p(id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM tasks \
             WHERE project_id = p.id \
               AND ($2::text IS NULL OR status = $3) \
               AND ($4::uuid IS NULL OR id > $5) \
             ORDER BY id LIMIT $6 \
         ) t",
        (
            project_ids.to_vec(),
            status.map(str::to_owned),
            status.map(str::to_owned),
            after,
            after,
            limit,
        ),
    )
    .rows::<SqlTypeOf<AsSelect<Task, Pg>>>()
    .load(conn)
    .await
}

/// A new task's fields, already checked.
#[derive(Debug)]
pub struct NewTask {
    pub project_id: Uuid,
    pub title: String,
    pub status: &'static str,
    pub assignee_id: Option<Uuid>,
    pub due_date: Option<NaiveDate>,
}

/// Inserts a task. A missing project or assignee is `NOT_FOUND` on that field.
pub async fn create(conn: &mut AsyncPgConnection, new: NewTask) -> AppResult<Task> {
    let now = Utc::now();
    let task = Task {
        id: Uuid::now_v7(),
        project_id: new.project_id,
        title: new.title,
        status: new.status.to_owned(),
        assignee_id: new.assignee_id,
        due_date: new.due_date,
        created_at: now,
        updated_at: now,
    };
    Ok(diesel::insert_into(tasks::table)
        .values(&task)
        .returning(Task::as_returning())
        .get_result(conn)
        .await?)
}

/// The task with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Task>> {
    tasks::table
        .find(id)
        .select(Task::as_select())
        .first(conn)
        .await
        .optional()
}

/// Applies `changes` to a task; `None` when there is no such task.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: TaskChanges,
) -> AppResult<Option<Task>> {
    if changes.is_empty() {
        return Ok(find(conn, id).await?);
    }
    Ok(diesel::update(tasks::table.find(id))
        .set((&changes, tasks::updated_at.eq(diesel::dsl::now)))
        .returning(Task::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Deletes a task; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    let n = diesel::delete(tasks::table.find(id)).execute(conn).await?;
    Ok(n > 0)
}
