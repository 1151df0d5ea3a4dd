//! A tenant's projects. Every function runs on a tenant-bound connection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::db::schema::tenant::projects;
use crate::error::{AppError, AppResult};

/// A project.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Changes to a project; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = projects)]
pub struct ProjectChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

/// Checks a project name: 1 to 200 characters after trimming.
pub fn parse_name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(AppError::bad_input(
            "name",
            "name must be 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Checks a description: at most 10,000 characters.
pub fn parse_description(raw: &str) -> AppResult<String> {
    if raw.contains('\0') {
        return Err(AppError::bad_input(
            "description",
            "description may not contain NUL",
        ));
    }
    if raw.chars().count() > 10_000 {
        return Err(AppError::bad_input(
            "description",
            "description must be at most 10000 characters",
        ));
    }
    Ok(raw.to_owned())
}

/// Up to `first` projects after the one with id `after`, oldest first, and
/// whether more follow.
pub async fn page(
    conn: &mut AsyncPgConnection,
    first: i64,
    after: Option<Uuid>,
) -> QueryResult<(Vec<Project>, bool)> {
    let mut query = projects::table
        .select(Project::as_select())
        .order(projects::id.asc())
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(projects::id.gt(after));
    }
    let mut rows = query.load(conn).await?;
    let more = rows.len() as i64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// How many projects the tenant has.
pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    projects::table.count().get_result(conn).await
}

/// The project with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Project>> {
    projects::table
        .find(id)
        .select(Project::as_select())
        .first(conn)
        .await
        .optional()
}

/// Creates a project unless the plan's project limit (`max_projects`,
/// `None` for unlimited) is reached.
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: String,
    description: Option<String>,
    max_projects: Option<i32>,
) -> AppResult<Project> {
    if let Some(max) = max_projects {
        // Serialises project creation within this tenant only, so two
        // concurrent requests cannot both take the last free slot.
        conn.batch_execute("LOCK TABLE projects IN SHARE ROW EXCLUSIVE MODE")
            .await?;
        let existing = count(conn).await?;
        if existing >= i64::from(max) {
            return Err(AppError::PlanLimitExceeded {
                message: format!("the plan allows {max} projects; this tenant has {existing}"),
                limit: "projects",
            });
        }
    }
    let now = Utc::now();
    let project = Project {
        id: Uuid::now_v7(),
        name,
        description,
        created_at: now,
        updated_at: now,
    };
    Ok(diesel::insert_into(projects::table)
        .values(&project)
        .returning(Project::as_returning())
        .get_result(conn)
        .await?)
}

/// Applies `changes` to a project; `None` when there is no such project.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: ProjectChanges,
) -> QueryResult<Option<Project>> {
    if changes.name.is_none() && changes.description.is_none() {
        return find(conn, id).await;
    }
    diesel::update(projects::table.find(id))
        .set((&changes, projects::updated_at.eq(diesel::dsl::now)))
        .returning(Project::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a project and its tasks; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    let n = diesel::delete(projects::table.find(id))
        .execute(conn)
        .await?;
    Ok(n > 0)
}
