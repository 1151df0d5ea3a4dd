//! Task pages answered in one walk of the query, without a future per field.
//!
//! async-graphql resolves every field of every object as a boxed future,
//! polled through a `FuturesUnordered`. A dashboard's page of 10 projects ×
//! 20 tasks with their assignees is about 2,000 such fields, and that
//! machinery was half of the server's CPU under R1 (BENCHMARKS.md, "Task pages
//! without a future per field"). A page's tasks, and the assignees fetched
//! with it, are already in memory, so [`TaskPage`] answers the fields it knows
//! from them directly, as the executor would: the same values, `__typename`s
//! and nulls, and an object whose every field was skipped is null.
//!
//! A connection field that needs the database (`totalCount`) is resolved by
//! the connection's own resolver. A page asking anything else memory cannot
//! answer goes to async-graphql's executor whole, before any user is fetched
//! for it: a task's `project`, an assignee's `roles`, a field with arguments
//! or a directive, a response key asked twice (the executor merges them), a
//! fragment on another type. So does a page whose assignees cannot all be
//! shown (a refused `members:read`, a user the loader does not find or an
//! error from it), so that the executor reports what it always reported.
//!
//! The schema has no extensions (`graphql::schema`); one that hooks every
//! field's resolution would not see the fields answered here.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, PageInfo};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    ContainerType, ContextSelectionSet, InputType, Name, OutputType, Positioned, ScalarType,
    ServerResult, Value,
};
use uuid::Uuid;

use crate::domain::tasks::Task;
use crate::domain::users::User;
use crate::graphql::context::ContextExt as _;
use crate::graphql::loaders::{UserKey, UserMap};
use crate::graphql::pagination::Cursor;
use crate::graphql::tasks::{TaskConnectionFields, TaskStatus};

type Inner = Connection<Cursor<Uuid>, Task, TaskConnectionFields>;
type TaskEdge = Edge<Cursor<Uuid>, Task, EmptyFields>;

/// A page of tasks: `TaskConnection` in the schema, answered from memory
/// where it can be (see the module's comment).
pub struct TaskPage(pub Inner);

impl OutputType for TaskPage {
    fn type_name() -> Cow<'static, str> {
        Inner::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Inner::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self.answer_from_memory(ctx).await {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// One selected field of the connection, in the order asked.
enum Slot<'q> {
    /// Answered from memory.
    Value(Name, Value),
    /// Left to the connection's resolver (a field that needs the database).
    Resolver(&'q Positioned<Field>),
}

impl TaskPage {
    /// The page's value, or `None` when some field needs the executor.
    async fn answer_from_memory(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
        let fragments = &ctx.query_env.fragments;
        let fields = fields_of(&ctx.item.node, fragments, &Self::type_name())?;
        let asks_assignee = shape(&fields, fragments)?;
        // The assignees: the executor checks `members:read` for each task
        // that has one; here it is checked once, and a refusal (an error
        // on each such task) is left to the executor to report.
        let tasks = self.0.edges.iter().map(|edge| &edge.node);
        let assigned: Vec<Uuid> = tasks.filter_map(|task| task.assignee_id).collect();
        let users = if asks_assignee && !assigned.is_empty() {
            let req = ctx.req().ok()?;
            let (scope, _) = req.require("members:read").await.ok()?;
            // Those not fetched with the page (the tenant's task list
            // fetches none) come through the loader, as for the executor.
            let (mut users, missing) = scope.users.several(&assigned);
            if !missing.is_empty() {
                let keys = missing.into_iter().map(UserKey);
                let loaded = scope.loader.load_many(keys).await.ok()?;
                users.extend(loaded.into_iter().map(|(key, user)| (key.0, user)));
            }
            users
        } else {
            UserMap::default()
        };
        let slots = self.plain_slots(fields, fragments, &users)?;

        // As the executor does: a field's error is reported and its key
        // left out; an object left with no key is null.
        let mut object = IndexMap::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Value(key, value) => {
                    object.insert(key, value);
                }
                Slot::Resolver(field) => {
                    let ctx_field = ctx.with_field(field);
                    match self.0.resolve_field(&ctx_field).await {
                        Ok(value) => {
                            let key = field.node.response_key().node.clone();
                            object.insert(key, value.unwrap_or_default());
                        }
                        Err(error) => ctx.add_error(error),
                    }
                }
            }
        }
        if let Ok(req) = ctx.req() {
            req.app.pages_from_memory.fetch_add(1, Ordering::Relaxed);
        }
        Some(object_or_null(object))
    }

    /// The connection's fields in the order asked, those memory answers
    /// answered; `None` when some field deeper needs the executor.
    fn plain_slots<'q>(
        &self,
        fields: Vec<&'q Positioned<Field>>,
        fragments: &'q HashMap<Name, Positioned<FragmentDefinition>>,
        users: &UserMap,
    ) -> Option<Vec<Slot<'q>>> {
        let page = Plain {
            fragments,
            users,
            edge_type: TaskEdge::type_name(),
            asked: RefCell::default(),
            statuses: RefCell::default(),
        };
        let mut slots = Vec::with_capacity(fields.len());
        for field in fields {
            let key = field.node.response_key().node.clone();
            let set = &field.node.selection_set.node;
            let value = match field.node.name.node.as_str() {
                "__typename" => Value::String(Self::type_name().into_owned()),
                "edges" => page.list(self.0.edges.iter(), |edge| page.edge(edge, set))?,
                "nodes" => page.list(self.0.edges.iter(), |edge| page.task(&edge.node, set))?,
                "pageInfo" => page.page_info(&self.0, set)?,
                _ => {
                    slots.push(Slot::Resolver(field));
                    continue;
                }
            };
            slots.push(Slot::Value(key, value));
        }
        Some(slots)
    }
}

/// What the walk needs besides the page: the query's fragments, the
/// assignees, what each selection set asks (found once: every task of a
/// page is asked the same), and each status's value (made once).
struct Plain<'q, 'u> {
    fragments: &'q HashMap<Name, Positioned<FragmentDefinition>>,
    users: &'u UserMap,
    /// The edges' type name, made once (async-graphql formats it each time).
    edge_type: Cow<'static, str>,
    asked: RefCell<Vec<(&'q SelectionSet, Rc<Asked<'q>>)>>,
    statuses: RefCell<Vec<(TaskStatus, Value)>>,
}

/// The fields a selection set asks, each field's place in the table of
/// names its type answers (`None`: `__typename`), and an object with their
/// response keys in that order, to be copied for each object answered:
/// filling a copy's values by position hashes no key and compares no name.
struct Asked<'q> {
    fields: Vec<&'q Positioned<Field>>,
    which: Vec<Option<usize>>,
    keys: IndexMap<Name, Value>,
}

impl<'q> Plain<'q, '_> {
    /// [`fields_of`] once per selection set (of one type, whose table of
    /// names is `names`).
    fn asked<F>(
        &self,
        set: &'q SelectionSet,
        type_name: &str,
        names: &[(&str, F)],
    ) -> Option<Rc<Asked<'q>>> {
        let mut asked = self.asked.borrow_mut();
        if let Some((_, seen)) = asked.iter().find(|(seen, _)| std::ptr::eq(*seen, set)) {
            return Some(seen.clone());
        }
        let fields = fields_of(set, self.fragments, type_name)?;
        let which = fields
            .iter()
            .map(|field| match field.node.name.node.as_str() {
                "__typename" => Some(None),
                name => names.iter().position(|(n, _)| *n == name).map(Some),
            })
            .collect::<Option<_>>()?;
        // `fields_of` refuses a response key asked twice, so the keys are
        // as many as the fields, in the same positions.
        let keys = fields
            .iter()
            .map(|field| (field.node.response_key().node.clone(), Value::Null))
            .collect();
        let seen = Rc::new(Asked {
            fields,
            which,
            keys,
        });
        asked.push((set, seen.clone()));
        Some(seen)
    }

    fn status(&self, stored: &str) -> Value {
        let status = TaskStatus::from_db(stored);
        let mut statuses = self.statuses.borrow_mut();
        if let Some((_, value)) = statuses.iter().find(|(seen, _)| *seen == status) {
            return value.clone();
        }
        let value = InputType::to_value(&status);
        statuses.push((status, value.clone()));
        value
    }

    fn list<T>(
        &self,
        items: impl ExactSizeIterator<Item = T>,
        one: impl Fn(T) -> Option<Value>,
    ) -> Option<Value> {
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            values.push(one(item)?);
        }
        Some(Value::List(values))
    }

    /// An object of `type_name` whose fields `one` answers, each named by
    /// its entry in `names`.
    fn object<F: Copy>(
        &self,
        set: &'q SelectionSet,
        type_name: &str,
        names: &[(&str, F)],
        one: impl Fn(F, &'q SelectionSet) -> Option<Value>,
    ) -> Option<Value> {
        let asked = self.asked(set, type_name, names)?;
        let mut object = asked.keys.clone();
        let fields = asked.fields.iter().zip(&asked.which);
        for ((&field, which), (_, slot)) in fields.zip(object.iter_mut()) {
            *slot = match which {
                None => Value::String(type_name.to_owned()),
                Some(i) => one(names[*i].1, &field.node.selection_set.node)?,
            };
        }
        Some(object_or_null(object))
    }

    fn page_info(&self, page: &Inner, set: &'q SelectionSet) -> Option<Value> {
        let cursor = |edge: Option<&TaskEdge>| {
            edge.map_or(Value::Null, |edge| {
                Value::String(edge.cursor.encode_cursor())
            })
        };
        self.object(set, &PageInfo::type_name(), PAGE_INFO_FIELDS, |field, _| {
            Some(match field {
                PageInfoField::HasPreviousPage => Value::Boolean(page.has_previous_page),
                PageInfoField::HasNextPage => Value::Boolean(page.has_next_page),
                PageInfoField::StartCursor => cursor(page.edges.first()),
                PageInfoField::EndCursor => cursor(page.edges.last()),
            })
        })
    }

    fn edge(&self, edge: &TaskEdge, set: &'q SelectionSet) -> Option<Value> {
        self.object(
            set,
            &self.edge_type,
            EDGE_FIELDS,
            |field, set| match field {
                EdgeField::Node => self.task(&edge.node, set),
                EdgeField::Cursor => Some(Value::String(edge.cursor.encode_cursor())),
            },
        )
    }

    fn task(&self, task: &Task, set: &'q SelectionSet) -> Option<Value> {
        self.object(set, &Task::type_name(), TASK_FIELDS, |field, set| {
            Some(match field {
                TaskField::Id => id(&task.id),
                TaskField::Title => Value::String(task.title.clone()),
                TaskField::Status => self.status(&task.status),
                TaskField::DueDate => task
                    .due_date
                    .as_ref()
                    .map_or(Value::Null, ScalarType::to_value),
                TaskField::CreatedAt => ScalarType::to_value(&task.created_at),
                TaskField::UpdatedAt => ScalarType::to_value(&task.updated_at),
                TaskField::Assignee => match task.assignee_id {
                    None => Value::Null,
                    Some(id) => self.user(self.users.get(&id)?, set)?,
                },
            })
        })
    }

    fn user(&self, user: &User, set: &'q SelectionSet) -> Option<Value> {
        self.object(set, &User::type_name(), USER_FIELDS, |field, _| {
            Some(match field {
                UserField::Id => id(&user.id),
                UserField::Email => Value::String(user.email.clone()),
                UserField::DisplayName => Value::String(user.display_name.clone()),
                UserField::Disabled => Value::Boolean(user.disabled_at.is_some()),
                UserField::CreatedAt => ScalarType::to_value(&user.created_at),
            })
        })
    }
}

/// An `ID` as the executor gives it (the uuid's hyphenated text), written
/// without the formatting machinery `to_string` goes through.
fn id(id: &Uuid) -> Value {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Value::String(id.hyphenated().encode_lower(&mut text).to_owned())
}

/// What the executor gives for an object: null when every field was
/// skipped (`@skip`, `@include`).
fn object_or_null(object: IndexMap<Name, Value>) -> Value {
    if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    }
}

/// The fields memory answers, per type: each one's name in the schema and
/// what it is (`__typename` aside, which every type answers).
#[derive(Clone, Copy)]
enum PageInfoField {
    HasPreviousPage,
    HasNextPage,
    StartCursor,
    EndCursor,
}

const PAGE_INFO_FIELDS: &[(&str, PageInfoField)] = &[
    ("hasPreviousPage", PageInfoField::HasPreviousPage),
    ("hasNextPage", PageInfoField::HasNextPage),
    ("startCursor", PageInfoField::StartCursor),
    ("endCursor", PageInfoField::EndCursor),
];

#[derive(Clone, Copy)]
enum EdgeField {
    Node,
    Cursor,
}

const EDGE_FIELDS: &[(&str, EdgeField)] =
    &[("node", EdgeField::Node), ("cursor", EdgeField::Cursor)];

#[derive(Clone, Copy)]
enum TaskField {
    Id,
    Title,
    Status,
    DueDate,
    CreatedAt,
    UpdatedAt,
    Assignee,
}

const TASK_FIELDS: &[(&str, TaskField)] = &[
    ("id", TaskField::Id),
    ("title", TaskField::Title),
    ("status", TaskField::Status),
    ("dueDate", TaskField::DueDate),
    ("createdAt", TaskField::CreatedAt),
    ("updatedAt", TaskField::UpdatedAt),
    ("assignee", TaskField::Assignee),
];

#[derive(Clone, Copy)]
enum UserField {
    Id,
    Email,
    DisplayName,
    Disabled,
    CreatedAt,
}

const USER_FIELDS: &[(&str, UserField)] = &[
    ("id", UserField::Id),
    ("email", UserField::Email),
    ("displayName", UserField::DisplayName),
    ("disabled", UserField::Disabled),
    ("createdAt", UserField::CreatedAt),
];

/// Whether memory can answer what the page is asked (`None`: it cannot),
/// and if so, whether any task is asked for its assignee. Checked before
/// any work, so a page the executor answers costs nothing twice.
fn shape(
    fields: &[&Positioned<Field>],
    fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
) -> Option<bool> {
    fn answered<F>(name: &str, names: &[(&str, F)]) -> bool {
        name == "__typename" || names.iter().any(|(n, _)| *n == name)
    }
    fn only<F>(
        set: &SelectionSet,
        fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
        type_name: &str,
        names: &[(&str, F)],
    ) -> Option<()> {
        let fields = fields_of(set, fragments, type_name)?;
        let known = |field: &&Positioned<Field>| answered(field.node.name.node.as_str(), names);
        fields.iter().all(known).then_some(())
    }
    let task = |set: &SelectionSet| -> Option<bool> {
        let mut assignee = false;
        for field in fields_of(set, fragments, &Task::type_name())? {
            match field.node.name.node.as_str() {
                "assignee" => {
                    only(
                        &field.node.selection_set.node,
                        fragments,
                        &User::type_name(),
                        USER_FIELDS,
                    )?;
                    assignee = true;
                }
                name if answered(name, TASK_FIELDS) => {}
                _ => return None,
            }
        }
        Some(assignee)
    };
    let mut assignee = false;
    for field in fields {
        let set = &field.node.selection_set.node;
        match field.node.name.node.as_str() {
            "edges" => {
                for field in fields_of(set, fragments, &TaskEdge::type_name())? {
                    match field.node.name.node.as_str() {
                        "node" => assignee |= task(&field.node.selection_set.node)?,
                        "cursor" | "__typename" => {}
                        _ => return None,
                    }
                }
            }
            "nodes" => assignee |= task(set)?,
            "pageInfo" => only(set, fragments, &PageInfo::type_name(), PAGE_INFO_FIELDS)?,
            // `__typename`, or the connection's resolver's.
            _ => {}
        }
    }
    Some(assignee)
}

/// The fields a selection set asks of an object of `type_name`, fragments
/// spread in, in the order asked; `None` when the executor must answer: a
/// field with arguments (none of the fields answered here takes any), a
/// field directive (`@skip` and `@include` are gone before execution; any
/// other is custom), a response key asked twice (the executor merges them),
/// or a fragment on another type (it would have to know which types
/// `type_name` belongs to).
fn fields_of<'q>(
    set: &'q SelectionSet,
    fragments: &'q HashMap<Name, Positioned<FragmentDefinition>>,
    type_name: &str,
) -> Option<Vec<&'q Positioned<Field>>> {
    let mut fields = Vec::new();
    let mut stack = vec![set.items.iter()];
    while let Some(items) = stack.last_mut() {
        let Some(selection) = items.next() else {
            stack.pop();
            continue;
        };
        match &selection.node {
            Selection::Field(field) => {
                if !field.node.directives.is_empty() || !field.node.arguments.is_empty() {
                    return None;
                }
                let key = field.node.response_key();
                if fields
                    .iter()
                    .any(|seen: &&Positioned<Field>| seen.node.response_key().node == key.node)
                {
                    return None;
                }
                fields.push(field);
            }
            Selection::FragmentSpread(spread) => {
                let fragment = fragments.get(&spread.node.fragment_name.node)?;
                if fragment.node.type_condition.node.on.node != type_name
                    || !spread.node.directives.is_empty()
                {
                    return None;
                }
                stack.push(fragment.node.selection_set.node.items.iter());
            }
            Selection::InlineFragment(inline) => {
                let on = inline.node.type_condition.as_ref();
                if on.is_some_and(|on| on.node.on.node != type_name)
                    || !inline.node.directives.is_empty()
                {
                    return None;
                }
                stack.push(inline.node.selection_set.node.items.iter());
            }
        }
    }
    Some(fields)
}
