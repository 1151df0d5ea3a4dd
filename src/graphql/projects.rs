//! Projects: the first tenant-local domain.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::projects::{self, Project, ProjectChanges};
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{ProjectTaskCountKey, ProjectTasksKey, load_error};
use crate::graphql::pagination::{Cursor, after_id, connection, page_size, parse_id};
use crate::graphql::task_page::TaskPage;
use crate::graphql::tasks::{TaskConnectionFields, TaskStatus, TaskTotal};
use crate::in_scope;

#[Object]
impl Project {
    /// Project id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// Free text; null when none.
    async fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// When the project was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When the project last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// The project's tasks, oldest first (batched across projects).
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<TaskStatus>,
    ) -> Result<TaskPage> {
        let req = ctx.req()?;
        let (scope, access) = req.require("tasks:read").await?;
        // Asked for each task's assignee (a dashboard): fetch them with the
        // page, one statement for every project's page. Not in a mutation,
        // whose later fields may change those users after this page.
        let assignees = req.reads_only()
            && access.permissions.has("members:read")
            && ctx
                .look_ahead()
                .field("edges")
                .field("node")
                .field("assignee")
                .exists();
        let first = page_size(first)?;
        let after = after_id(after.as_deref())?;
        let status = status.map(TaskStatus::as_db);
        let mut rows = scope
            .task_pages
            .load_one(
                scope.loader.loader(),
                ProjectTasksKey {
                    project_id: self.id,
                    status,
                    after,
                    limit: first + 1,
                    assignees,
                },
            )
            .await
            .map_err(load_error)?
            .unwrap_or_default();
        let more = rows.len() as i64 > first;
        rows.truncate(first as usize);
        let total = TaskTotal::Project(ProjectTaskCountKey {
            project_id: self.id,
            status,
        });
        Ok(TaskPage(connection(
            rows,
            more,
            after.is_some(),
            |t| t.id,
            TaskConnectionFields(total),
        )))
    }
}

/// Extra fields of `ProjectConnection`.
pub struct ProjectConnectionFields;

#[Object]
impl ProjectConnectionFields {
    /// How many projects the tenant has in all.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:read").await?;
        Ok(in_scope!(scope.work, |conn| Ok(
            projects::count(conn).await?
        ))?)
    }
}

/// A new project.
#[derive(InputObject, Debug)]
pub struct CreateProjectInput {
    /// 1 to 200 characters.
    pub name: String,
    /// Free text, at most 10,000 characters.
    pub description: Option<String>,
}

/// Changes to a project; fields left out stay as they are.
#[derive(InputObject, Debug)]
pub struct UpdateProjectInput {
    /// The project to change.
    pub id: ID,
    /// New name.
    pub name: Option<String>,
    /// New description; null clears it.
    pub description: MaybeUndefined<String>,
}

/// The project to delete.
#[derive(InputObject, Debug)]
pub struct DeleteProjectInput {
    /// The project to delete, with its tasks.
    pub id: ID,
}

/// The created project.
#[derive(SimpleObject)]
pub struct CreateProjectPayload {
    /// The new project.
    pub project: Project,
}

/// The changed project.
#[derive(SimpleObject)]
pub struct UpdateProjectPayload {
    /// The project as it is now.
    pub project: Project,
}

/// What was deleted.
#[derive(SimpleObject)]
pub struct DeleteProjectPayload {
    /// Id of the deleted project.
    pub deleted_project_id: ID,
}

/// Reading projects.
#[derive(Default)]
pub struct ProjectsQuery;

#[Object]
impl ProjectsQuery {
    /// The tenant's projects, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<Cursor<uuid::Uuid>, Project, ProjectConnectionFields>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:read").await?;
        let first = page_size(first)?;
        let after = after_id(after.as_deref())?;
        let (rows, more) = in_scope!(scope.work, |conn| Ok(
            projects::page(conn, first, after).await?
        ))?;
        Ok(connection(
            rows,
            more,
            after.is_some(),
            |p| p.id,
            ProjectConnectionFields,
        ))
    }

    /// One project; null when the tenant has no such project.
    async fn project(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Project>> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:read").await?;
        let id = parse_id(&id, "id")?;
        Ok(in_scope!(scope.work, |conn| Ok(
            projects::find(conn, id).await?
        ))?)
    }
}

/// Changing projects.
#[derive(Default)]
pub struct ProjectsMutation;

#[Object]
impl ProjectsMutation {
    /// Creates a project. `PLAN_LIMIT_EXCEEDED` when the plan's project limit is reached.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
    ) -> Result<CreateProjectPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:write").await?;
        let name = projects::parse_name(&input.name)?;
        let description = input
            .description
            .as_deref()
            .map(projects::parse_description)
            .transpose()?;
        let max_projects = req.plan(&scope.tenant.plan_code).await?.max_projects;
        let project = in_scope!(scope.work, |conn| {
            projects::create(conn, name, description, max_projects).await
        })?;
        Ok(CreateProjectPayload { project })
    }

    /// Changes a project's name or description.
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        input: UpdateProjectInput,
    ) -> Result<UpdateProjectPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:write").await?;
        let id = parse_id(&input.id, "id")?;
        let changes = ProjectChanges {
            name: input
                .name
                .as_deref()
                .map(projects::parse_name)
                .transpose()?,
            description: match input.description {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(d) => Some(Some(projects::parse_description(&d)?)),
            },
        };
        let project = in_scope!(scope.work, |conn| Ok(
            projects::update(conn, id, changes).await?
        ))?
        .ok_or_else(|| AppError::not_found(Some("id"), "project not found"))?;
        Ok(UpdateProjectPayload { project })
    }

    /// Deletes a project and its tasks.
    async fn delete_project(
        &self,
        ctx: &Context<'_>,
        input: DeleteProjectInput,
    ) -> Result<DeleteProjectPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("projects:write").await?;
        let id = parse_id(&input.id, "id")?;
        let existed = in_scope!(scope.work, |conn| Ok(projects::delete(conn, id).await?))?;
        if !existed {
            return Err(AppError::not_found(Some("id"), "project not found").into());
        }
        Ok(DeleteProjectPayload {
            deleted_project_id: input.id,
        })
    }
}
