//! Tasks inside projects.

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::projects::Project;
use crate::domain::tasks::{self, NewTask, Task, TaskChanges, TaskFilter};
use crate::domain::users::User;
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{ProjectKey, ProjectTaskCountKey, UserKey, load_error};
use crate::graphql::pagination::{after_id, connection, page_size, parse_id};
use crate::graphql::task_page::TaskPage;
use crate::in_scope;

/// Where a task is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TaskStatus {
    /// Not started.
    Todo,
    /// Being worked on.
    InProgress,
    /// Finished.
    Done,
}

impl TaskStatus {
    /// The stored value.
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::InProgress => "in_progress",
            Self::Done => "done",
        }
    }

    /// The status a stored value names.
    pub fn from_db(value: &str) -> Self {
        match value {
            "in_progress" => Self::InProgress,
            "done" => Self::Done,
            _ => Self::Todo,
        }
    }
}

#[Object]
impl Task {
    /// Task id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Title.
    async fn title(&self) -> &str {
        &self.title
    }
    /// Where the task is in its life.
    async fn status(&self) -> TaskStatus {
        TaskStatus::from_db(&self.status)
    }
    /// Due date, if any.
    async fn due_date(&self) -> Option<NaiveDate> {
        self.due_date
    }
    /// When the task was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When the task last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// The project the task belongs to (batched).
    async fn project(&self, ctx: &Context<'_>) -> Result<Project> {
        let (scope, _) = ctx.req()?.require("projects:read").await?;
        scope
            .loader
            .load_one(ProjectKey(self.project_id))
            .await
            .map_err(load_error)?
            .ok_or_else(|| AppError::not_found(None, "project not found").into())
    }
    /// Who the task is assigned to, if anyone (batched). Needs `members:read`.
    async fn assignee(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(id) = self.assignee_id else {
            return Ok(None);
        };
        let (scope, _) = ctx.req()?.require("members:read").await?;
        if let Some(user) = scope.users.get(id) {
            return Ok(Some(user));
        }
        scope.loader.load_one(UserKey(id)).await.map_err(load_error)
    }
}

/// What `totalCount` counts.
pub enum TaskTotal {
    /// Tasks matching a top-level filter.
    Filter(TaskFilter),
    /// One project's tasks (batched).
    Project(ProjectTaskCountKey),
}

/// Extra fields of `TaskConnection`.
pub struct TaskConnectionFields(pub TaskTotal);

#[Object]
impl TaskConnectionFields {
    /// How many tasks match, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let req = ctx.req()?;
        let (scope, _) = req.require("tasks:read").await?;
        match &self.0 {
            TaskTotal::Filter(filter) => Ok(in_scope!(scope.work, |conn| Ok(tasks::count(
                conn, filter
            )
            .await?))?),
            TaskTotal::Project(key) => Ok(scope
                .task_counts
                .load_one(scope.loader.loader(), *key)
                .await
                .map_err(load_error)?
                .unwrap_or(0)),
        }
    }
}

/// A new task.
#[derive(InputObject, Debug)]
pub struct CreateTaskInput {
    /// The project it belongs to.
    pub project_id: ID,
    /// 1 to 500 characters.
    pub title: String,
    /// Defaults to `TODO`.
    pub status: Option<TaskStatus>,
    /// A user of this tenant.
    pub assignee_id: Option<ID>,
    /// Due date.
    pub due_date: Option<NaiveDate>,
}

/// Changes to a task; fields left out stay as they are, null clears.
#[derive(InputObject, Debug)]
pub struct UpdateTaskInput {
    /// The task to change.
    pub id: ID,
    /// New title.
    pub title: Option<String>,
    /// New status.
    pub status: Option<TaskStatus>,
    /// New assignee; null unassigns.
    pub assignee_id: MaybeUndefined<ID>,
    /// New due date; null clears it.
    pub due_date: MaybeUndefined<NaiveDate>,
}

/// The task to delete.
#[derive(InputObject, Debug)]
pub struct DeleteTaskInput {
    /// The task to delete.
    pub id: ID,
}

/// The created task.
#[derive(SimpleObject)]
pub struct CreateTaskPayload {
    /// The new task.
    pub task: Task,
}

/// The changed task.
#[derive(SimpleObject)]
pub struct UpdateTaskPayload {
    /// The task as it is now.
    pub task: Task,
}

/// What was deleted.
#[derive(SimpleObject)]
pub struct DeleteTaskPayload {
    /// Id of the deleted task.
    pub deleted_task_id: ID,
}

/// Reading tasks.
#[derive(Default)]
pub struct TasksQuery;

#[Object]
impl TasksQuery {
    /// The tenant's tasks, oldest first, optionally filtered.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        project_id: Option<ID>,
        status: Option<TaskStatus>,
        assignee_id: Option<ID>,
    ) -> Result<TaskPage> {
        let req = ctx.req()?;
        let (scope, _) = req.require("tasks:read").await?;
        let first = page_size(first)?;
        let after = after_id(after.as_deref())?;
        let filter = TaskFilter {
            project_id: project_id
                .as_ref()
                .map(|id| parse_id(id, "projectId"))
                .transpose()?,
            status: status.map(TaskStatus::as_db),
            assignee_id: assignee_id
                .as_ref()
                .map(|id| parse_id(id, "assigneeId"))
                .transpose()?,
        };
        let (rows, more) = in_scope!(scope.work, |conn| Ok(tasks::page(
            conn, &filter, first, after
        )
        .await?))?;
        Ok(TaskPage(connection(
            rows,
            more,
            after.is_some(),
            |t| t.id,
            TaskConnectionFields(TaskTotal::Filter(filter)),
        )))
    }
}

/// Changing tasks.
#[derive(Default)]
pub struct TasksMutation;

#[Object]
impl TasksMutation {
    /// Creates a task. An unknown project or assignee is `NOT_FOUND` on that field.
    async fn create_task(
        &self,
        ctx: &Context<'_>,
        input: CreateTaskInput,
    ) -> Result<CreateTaskPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("tasks:write").await?;
        let new = NewTask {
            project_id: parse_id(&input.project_id, "projectId")?,
            title: tasks::parse_title(&input.title)?,
            status: input.status.unwrap_or(TaskStatus::Todo).as_db(),
            assignee_id: input
                .assignee_id
                .as_ref()
                .map(|id| parse_id(id, "assigneeId"))
                .transpose()?,
            due_date: input.due_date,
        };
        let task = in_scope!(scope.work, |conn| tasks::create(conn, new).await)?;
        Ok(CreateTaskPayload { task })
    }

    /// Changes a task.
    async fn update_task(
        &self,
        ctx: &Context<'_>,
        input: UpdateTaskInput,
    ) -> Result<UpdateTaskPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("tasks:write").await?;
        let id = parse_id(&input.id, "id")?;
        let changes = TaskChanges {
            title: input.title.as_deref().map(tasks::parse_title).transpose()?,
            status: input.status.map(|s| s.as_db().to_owned()),
            assignee_id: match &input.assignee_id {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(a) => Some(Some(parse_id(a, "assigneeId")?)),
            },
            due_date: match input.due_date {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(d) => Some(Some(d)),
            },
        };
        let task = in_scope!(scope.work, |conn| tasks::update(conn, id, changes).await)?
            .ok_or_else(|| AppError::not_found(Some("id"), "task not found"))?;
        Ok(UpdateTaskPayload { task })
    }

    /// Deletes a task.
    async fn delete_task(
        &self,
        ctx: &Context<'_>,
        input: DeleteTaskInput,
    ) -> Result<DeleteTaskPayload> {
        let req = ctx.req()?;
        let (scope, _) = req.require("tasks:write").await?;
        let id = parse_id(&input.id, "id")?;
        let existed = in_scope!(scope.work, |conn| Ok(tasks::delete(conn, id).await?))?;
        if !existed {
            return Err(AppError::not_found(Some("id"), "task not found").into());
        }
        Ok(DeleteTaskPayload {
            deleted_task_id: input.id,
        })
    }
}
