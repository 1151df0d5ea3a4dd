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
//! It writes the page as JSON straight away, carried to the response's
//! writer as `Value::Binary` (see `graphql::response_json`), rather than
//! building a value per object and field to be written later: those maps
//! and strings, built, written and dropped, took nearly a quarter of the
//! server's CPU per dashboard request (BENCHMARKS.md, "Task pages written
//! as JSON"). The executor merges the values of a response key asked twice
//! (`tasks { nodes { title } } tasks { totalCount }`, or two fragments that
//! both ask a project's tasks), which it cannot do with JSON; so when a
//! request's document may merge objects anywhere
//! (`graphql::parsed::merges_objects`), its pages go to the executor.
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
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, PageInfo};
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
use crate::graphql::response_json;
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
    /// Answered from memory: its value's JSON, at this place in the page's.
    Json(&'q Name, Range<usize>),
    /// Left to the connection's resolver (a field that needs the database).
    Resolver(&'q Positioned<Field>),
}

impl TaskPage {
    /// The page's value (JSON written in advance), or `None` when some
    /// field needs the executor.
    async fn answer_from_memory(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
        let req = ctx.req().ok()?;
        if req.merges_objects {
            return None;
        }
        let fragments = &ctx.query_env.fragments;
        let fields = fields_of(&ctx.item.node, fragments, &Self::type_name())?;
        let asks_assignee = shape(&fields, fragments)?;
        // The assignees: the executor checks `members:read` for each task
        // that has one; here it is checked once, and a refusal (an error
        // on each such task) is left to the executor to report.
        let tasks = self.0.edges.iter().map(|edge| &edge.node);
        let assigned: Vec<Uuid> = tasks.filter_map(|task| task.assignee_id).collect();
        let users = if asks_assignee && !assigned.is_empty() {
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
        let mut values = Vec::new();
        let slots = self.plain_slots(fields, fragments, &users, &mut values)?;

        // As the executor does: a field's error is reported and its key
        // left out; an object left with no key is null.
        let mut page = Vec::with_capacity(values.len() + 64);
        for slot in slots {
            match slot {
                Slot::Json(key, range) => {
                    key_json(&mut page, key)?;
                    page.extend_from_slice(&values[range]);
                }
                Slot::Resolver(field) => match self.0.resolve_field(&ctx.with_field(field)).await {
                    Ok(value) => {
                        key_json(&mut page, &field.node.response_key().node)?;
                        value_json(&mut page, &value.unwrap_or_default())?;
                    }
                    Err(error) => ctx.add_error(error),
                },
            }
        }
        req.app.pages_from_memory.fetch_add(1, Ordering::Relaxed);
        if page.is_empty() {
            return Some(Value::Null);
        }
        page.push(b'}');
        Some(Value::Binary(page.into()))
    }

    /// The connection's fields in the order asked, those memory answers
    /// written to `values`; `None` when some field deeper needs the
    /// executor.
    fn plain_slots<'q>(
        &self,
        fields: Vec<&'q Positioned<Field>>,
        fragments: &'q HashMap<Name, Positioned<FragmentDefinition>>,
        users: &UserMap,
        values: &mut Vec<u8>,
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
            let set = &field.node.selection_set.node;
            let start = values.len();
            match field.node.name.node.as_str() {
                "__typename" => string(values, &Self::type_name())?,
                "edges" => page.list(values, self.0.edges.iter(), |out, edge| {
                    page.edge(out, edge, set)
                })?,
                "nodes" => page.list(values, self.0.edges.iter(), |out, edge| {
                    page.task(out, &edge.node, set)
                })?,
                "pageInfo" => page.page_info(values, &self.0, set)?,
                _ => {
                    slots.push(Slot::Resolver(field));
                    continue;
                }
            }
            let key = &field.node.response_key().node;
            slots.push(Slot::Json(key, start..values.len()));
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
/// names its type answers (`None`: `__typename`), and each one's key as
/// JSON (`"key":`, after a comma but the first), written once for every
/// object answered.
struct Asked<'q> {
    fields: Vec<&'q Positioned<Field>>,
    which: Vec<Option<usize>>,
    keys: Vec<Vec<u8>>,
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
        // `fields_of` refuses a response key asked twice, so each key is
        // written once per object.
        let keys = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let mut key = Vec::new();
                if i > 0 {
                    key.push(b',');
                }
                string(&mut key, &field.node.response_key().node)?;
                key.push(b':');
                Some(key)
            })
            .collect::<Option<_>>()?;
        let seen = Rc::new(Asked {
            fields,
            which,
            keys,
        });
        asked.push((set, seen.clone()));
        Some(seen)
    }

    fn status(&self, out: &mut Vec<u8>, stored: &str) -> Option<()> {
        let status = TaskStatus::from_db(stored);
        let mut statuses = self.statuses.borrow_mut();
        if let Some((_, value)) = statuses.iter().find(|(seen, _)| *seen == status) {
            return value_json(out, value);
        }
        let value = InputType::to_value(&status);
        value_json(out, &value)?;
        statuses.push((status, value));
        Some(())
    }

    fn list<T>(
        &self,
        out: &mut Vec<u8>,
        items: impl Iterator<Item = T>,
        one: impl Fn(&mut Vec<u8>, T) -> Option<()>,
    ) -> Option<()> {
        out.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            one(out, item)?;
        }
        out.push(b']');
        Some(())
    }

    /// An object of `type_name` whose fields `one` answers, each named by
    /// its entry in `names`; null when every field was skipped (`@skip`,
    /// `@include`), as the executor gives it.
    fn object<F: Copy>(
        &self,
        out: &mut Vec<u8>,
        set: &'q SelectionSet,
        type_name: &str,
        names: &[(&str, F)],
        one: impl Fn(&mut Vec<u8>, F, &'q SelectionSet) -> Option<()>,
    ) -> Option<()> {
        let asked = self.asked(set, type_name, names)?;
        if asked.fields.is_empty() {
            out.extend_from_slice(b"null");
            return Some(());
        }
        out.push(b'{');
        let fields = asked.fields.iter().zip(&asked.which).zip(&asked.keys);
        for ((&field, which), key) in fields {
            out.extend_from_slice(key);
            match which {
                None => string(out, type_name)?,
                Some(i) => one(out, names[*i].1, &field.node.selection_set.node)?,
            }
        }
        out.push(b'}');
        Some(())
    }

    fn page_info(&self, out: &mut Vec<u8>, page: &Inner, set: &'q SelectionSet) -> Option<()> {
        let cursor = |out: &mut Vec<u8>, edge: Option<&TaskEdge>| match edge {
            None => null(out),
            Some(edge) => string(out, &edge.cursor.encode_cursor()),
        };
        let names = PAGE_INFO_FIELDS;
        self.object(
            out,
            set,
            &PageInfo::type_name(),
            names,
            |out, field, _| match field {
                PageInfoField::HasPreviousPage => boolean(out, page.has_previous_page),
                PageInfoField::HasNextPage => boolean(out, page.has_next_page),
                PageInfoField::StartCursor => cursor(out, page.edges.first()),
                PageInfoField::EndCursor => cursor(out, page.edges.last()),
            },
        )
    }

    fn edge(&self, out: &mut Vec<u8>, edge: &TaskEdge, set: &'q SelectionSet) -> Option<()> {
        self.object(
            out,
            set,
            &self.edge_type,
            EDGE_FIELDS,
            |out, field, set| match field {
                EdgeField::Node => self.task(out, &edge.node, set),
                EdgeField::Cursor => string(out, &edge.cursor.encode_cursor()),
            },
        )
    }

    fn task(&self, out: &mut Vec<u8>, task: &Task, set: &'q SelectionSet) -> Option<()> {
        self.object(
            out,
            set,
            &Task::type_name(),
            TASK_FIELDS,
            |out, field, set| match field {
                TaskField::Id => id(out, &task.id),
                TaskField::Title => string(out, &task.title),
                TaskField::Status => self.status(out, &task.status),
                TaskField::DueDate => match &task.due_date {
                    None => null(out),
                    Some(date) => value_json(out, &ScalarType::to_value(date)),
                },
                TaskField::CreatedAt => value_json(out, &ScalarType::to_value(&task.created_at)),
                TaskField::UpdatedAt => value_json(out, &ScalarType::to_value(&task.updated_at)),
                TaskField::Assignee => match task.assignee_id {
                    None => null(out),
                    Some(id) => self.user(out, self.users.get(&id)?, set),
                },
            },
        )
    }

    fn user(&self, out: &mut Vec<u8>, user: &User, set: &'q SelectionSet) -> Option<()> {
        self.object(
            out,
            set,
            &User::type_name(),
            USER_FIELDS,
            |out, field, _| match field {
                UserField::Id => id(out, &user.id),
                UserField::Email => string(out, &user.email),
                UserField::DisplayName => string(out, &user.display_name),
                UserField::Disabled => boolean(out, user.disabled_at.is_some()),
                UserField::CreatedAt => value_json(out, &ScalarType::to_value(&user.created_at)),
            },
        )
    }
}

/// An `ID` as the executor gives it (the uuid's hyphenated text), written
/// without the formatting machinery `to_string` goes through.
fn id(out: &mut Vec<u8>, id: &Uuid) -> Option<()> {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
    out.push(b'"');
    Some(())
}

fn string(out: &mut Vec<u8>, s: &str) -> Option<()> {
    response_json::string(out, s).ok()
}

fn value_json(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    response_json::value(out, value).ok()
}

fn boolean(out: &mut Vec<u8>, b: bool) -> Option<()> {
    out.extend_from_slice(if b { b"true" } else { b"false" });
    Some(())
}

fn null(out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(b"null");
    Some(())
}

/// `"key":` in an object written into `out` from its start: the object's
/// `{` before its first key, a comma before the others.
fn key_json(out: &mut Vec<u8>, key: &str) -> Option<()> {
    out.push(if out.is_empty() { b'{' } else { b',' });
    string(out, key)?;
    out.push(b':');
    Some(())
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
