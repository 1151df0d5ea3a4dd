//! Export, import and clone: a tenant's schema and data as one file, or
//! copied into a new tenant inside the database.
//!
//! The file is JSON Lines: a header (tenant, template version and steps,
//! every table with its columns), one line per row (`to_jsonb`: values keep
//! PostgreSQL's own text form, numbers lose no precision, and a row is always
//! one line), and an end
//! line with the row count of every table. A file without its end line is
//! refused as truncated. The schema is named by the template version rather
//! than as DDL, so importing a file runs this server's template, never SQL
//! taken from the file.
//!
//! A new tenant (import or clone) is built the way provisioning builds one,
//! in one transaction: the row, the schema at the source's template version,
//! the data, the remaining template steps, then a database role of its own.
//! Users keep their passwords; sessions, API keys and open invitations are
//! revoked, since their secrets belong to the source tenant.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::{Array, Bool, Text};
use diesel_async::TransactionManager as _;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::db::Pool;
use crate::db::schema::management::tenants;
use crate::domain::{audit, plans};
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::db_role;
use crate::tenancy::lifecycle;
use crate::tenancy::provision;
use crate::tenancy::template::{TemplateStep, latest_version};
use crate::tenancy::tenants::{Tenant, status};

/// The `format` of an export file's header.
pub const FORMAT: &str = "strata-tenant-export";
/// The layout of export files this server writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Rows fetched, or inserted, per statement.
const CHUNK: usize = 1000;

/// Credentials carried over from the source are secrets of the source
/// tenant: end them. Runs at the latest template version.
const REVOKE_CREDENTIALS: &str = "\
    UPDATE sessions SET revoked_at = now() WHERE revoked_at IS NULL; \
    DELETE FROM refresh_tokens; \
    DELETE FROM login_attempts; \
    UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL; \
    UPDATE invitations SET revoked_at = now() WHERE accepted_at IS NULL AND revoked_at IS NULL";

/// An export file's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub template_version: i32,
    /// The names of template steps 1..=`template_version`.
    pub template_steps: Vec<String>,
    pub exported_at: DateTime<Utc>,
    /// In load order: every table after the tables it references.
    pub tables: Vec<TableShape>,
}

/// A table and its columns, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<String>,
}

/// The last line: rows per table, to tell a whole file from a cut one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct End {
    rows: BTreeMap<String, u64>,
}

/// Any line of the file; exactly one field is set.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    header: Option<Header>,
    table: Option<String>,
    #[serde(borrow)]
    row: Option<&'a RawValue>,
    end: Option<End>,
}

/// What an export, import or clone moved.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The exported tenant, or the new one.
    pub tenant: Tenant,
    /// Rows per table, in load order.
    pub rows: Vec<(String, u64)>,
}

/// A table as the catalog describes it.
#[derive(Debug, QueryableByName)]
struct CatalogTable {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Array<Text>)]
    columns: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    refs: Vec<String>,
    #[diesel(sql_type = Bool)]
    self_ref: bool,
}

/// A table to move.
#[derive(Debug, Clone)]
struct Table {
    shape: TableShape,
    /// It references itself, so all its rows go in one statement (a
    /// foreign key is checked at the end of the statement, not per row).
    self_ref: bool,
}

impl Table {
    fn quoted(&self, schema: &str) -> String {
        format!("{schema}.{}", ident(&self.shape.name))
    }

    fn column_list(&self) -> String {
        self.shape
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of `schema`, each after the tables it references.
async fn tables_of(conn: &mut AsyncPgConnection, schema: &str) -> AppResult<Vec<Table>> {
    let found: Vec<CatalogTable> = diesel::sql_query(
        "SELECT c.relname::text AS name, \
             ARRAY(SELECT a.attname::text FROM pg_attribute a \
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                     AND a.attgenerated = '' ORDER BY a.attnum) AS columns, \
             ARRAY(SELECT DISTINCT r.relname::text FROM pg_constraint k \
                   JOIN pg_class r ON r.oid = k.confrelid \
                   WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.confrelid <> c.oid \
                     AND r.relnamespace = c.relnamespace) AS refs, \
             EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid \
                     AND k.contype = 'f' AND k.confrelid = c.oid) AS self_ref \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition \
         ORDER BY c.relname",
    )
    .bind::<Text, _>(schema)
    .load(conn)
    .await?;
    load_order(found)
}

/// Sorts tables so that each comes after those it references (ties by name).
fn load_order(found: Vec<CatalogTable>) -> AppResult<Vec<Table>> {
    let mut pending: Vec<CatalogTable> = found;
    let mut placed: Vec<Table> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|t| {
            t.refs
                .iter()
                .all(|r| placed.iter().any(|p| &p.shape.name == r))
        });
        let Some(i) = ready else {
            let names: Vec<&str> = pending.iter().map(|t| t.name.as_str()).collect();
            return Err(AppError::internal(anyhow::anyhow!(
                "tables reference each other in a cycle: {}",
                names.join(", ")
            )));
        };
        let t = pending.remove(i);
        placed.push(Table {
            shape: TableShape {
                name: t.name,
                columns: t.columns,
            },
            self_ref: t.self_ref,
        });
    }
    Ok(placed)
}

/// A row of the cursor: one line of the file.
#[derive(QueryableByName)]
struct JsonLine {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Writes tenant `slug` (whatever its status) to `out` from one consistent
/// snapshot, and records the export in the same transaction. `destination` says where it went.
pub async fn export(
    pool: &Pool,
    template: &[TemplateStep],
    slug: &str,
    out: &mut impl Write,
    actor: &str,
    destination: &str,
) -> AppResult<Moved> {
    let mut conn = pool.get().await?;
    // Not READ ONLY: the row is locked FOR SHARE, so a fleet migration
    // (FOR UPDATE) waits and the schema matches the version in the header.
    AnsiTransactionManager::begin_transaction_sql(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
    )
    .await?;
    let result = async {
        let moved = export_in_tx(&mut conn, template, slug, out).await?;
        let reason = format!("exported to {destination}");
        lifecycle::record(&mut conn, &moved.tenant, "exported", actor, &reason).await?;
        Ok(moved)
    }
    .await;
    lifecycle::finish(&mut conn, result).await
}

async fn export_in_tx(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    slug: &str,
    out: &mut impl Write,
) -> AppResult<Moved> {
    let tenant: Tenant = tenants::table
        .filter(tenants::slug.eq(slug))
        .select(Tenant::as_select())
        .for_share()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found(Some("slug"), format!("no tenant '{slug}'")))?;
    if steps_upto(template, tenant.template_version).is_none() {
        return Err(AppError::conflict(
            "slug",
            format!(
                "tenant '{slug}' is at template version {}, which this server does not know; export it with a newer strata",
                tenant.template_version
            ),
        ));
    }
    let schema = tenant.parsed_slug()?.schema_name();
    let tables = tables_of(conn, &schema).await?;
    if tables.is_empty() {
        return Err(AppError::conflict(
            "slug",
            format!("tenant '{slug}' has no schema {schema}; run `strata doctor`"),
        ));
    }
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        slug: tenant.slug.clone(),
        name: tenant.name.clone(),
        plan: tenant.plan_code.clone(),
        template_version: tenant.template_version,
        template_steps: template
            .iter()
            .filter(|s| s.version <= tenant.template_version)
            .map(|s| s.name.to_owned())
            .collect(),
        exported_at: Utc::now(),
        tables: tables.iter().map(|t| t.shape.clone()).collect(),
    };
    let write = |out: &mut dyn Write, line: &str| {
        writeln!(out, "{line}").map_err(|e| AppError::internal(anyhow::anyhow!("writing: {e}")))
    };
    let header_line = serde_json::json!({ "header": header }).to_string();
    write(out, &header_line)?;
    let quoted_schema = ident(&schema);
    let mut rows = Vec::with_capacity(tables.len());
    for table in &tables {
        conn.batch_execute(&format!(
            "DECLARE strata_export NO SCROLL CURSOR FOR \
             SELECT jsonb_build_object('table', {name}, 'row', to_jsonb(t))::text AS line \
             FROM {qualified} t",
            name = literal(&table.shape.name),
            qualified = table.quoted(&quoted_schema),
        ))
        .await?;
        let mut count = 0u64;
        loop {
            let batch: Vec<JsonLine> =
                diesel::sql_query(format!("FETCH {CHUNK} FROM strata_export"))
                    .load(conn)
                    .await?;
            for l in &batch {
                write(out, &l.line)?;
            }
            count += batch.len() as u64;
            if batch.len() < CHUNK {
                break;
            }
        }
        conn.batch_execute("CLOSE strata_export").await?;
        rows.push((table.shape.name.clone(), count));
    }
    let end = End {
        rows: rows.iter().cloned().collect(),
    };
    write(out, &serde_json::json!({ "end": end }).to_string())?;
    out.flush()
        .map_err(|e| AppError::internal(anyhow::anyhow!("writing: {e}")))?;
    Ok(Moved { tenant, rows })
}

/// A string literal for SQL (names from the catalog only).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Where a new tenant's data comes from.
enum Source<'r, R: BufRead> {
    /// An export file, and the tables its header declares.
    File {
        input: &'r mut R,
        origin: &'r str,
        tables: &'r [TableShape],
    },
    Tenant {
        schema: String,
    },
}

/// Creates tenant `new_slug` from an export file read from `input`
/// (`origin` names it in the record). The name defaults to the file's.
pub async fn import(
    pool: &Pool,
    template: &[TemplateStep],
    input: &mut impl BufRead,
    origin: &str,
    new_slug: &str,
    name: Option<&str>,
    actor: &str,
) -> AppResult<Moved> {
    let slug =
        TenantSlug::parse(new_slug).map_err(|e| AppError::bad_input("slug", e.to_string()))?;
    let mut first = String::new();
    input
        .read_line(&mut first)
        .map_err(|e| AppError::bad_input("file", format!("reading {origin}: {e}")))?;
    let header = serde_json::from_str::<Line<'_>>(&first)
        .ok()
        .and_then(|l| l.header)
        .filter(|h| h.format == FORMAT)
        .ok_or_else(|| {
            AppError::bad_input("file", format!("{origin} is not a Strata tenant export"))
        })?;
    if header.format_version != FORMAT_VERSION {
        return Err(AppError::bad_input(
            "file",
            format!(
                "{origin} is export format {}; this server reads format {FORMAT_VERSION}",
                header.format_version
            ),
        ));
    }
    let steps = steps_upto(template, header.template_version).ok_or_else(|| {
        AppError::bad_input(
            "file",
            format!(
                "{origin} is at template version {}, newer than this server's {}; import it with a newer strata",
                header.template_version,
                latest_version(template)
            ),
        )
    })?;
    if steps
        .iter()
        .map(|s| s.name)
        .ne(header.template_steps.iter().map(String::as_str))
    {
        return Err(AppError::bad_input(
            "file",
            format!("{origin} was made with a different tenant template than this server's"),
        ));
    }
    let name = provision::parse_name(name.unwrap_or(&header.name))?;
    let mut conn = pool.get().await?;
    if plans::find(&mut conn, &header.plan).await?.is_none() {
        return Err(AppError::bad_input(
            "file",
            format!(
                "{origin} is on plan '{}', which this server does not have",
                header.plan
            ),
        ));
    }
    AnsiTransactionManager::begin_transaction(&mut *conn).await?;
    let result = build(
        &mut conn,
        template,
        &slug,
        &name,
        &header.plan,
        header.template_version,
        Source::File {
            input,
            origin,
            tables: &header.tables,
        },
        actor,
    )
    .await;
    lifecycle::finish(&mut conn, result).await
}

/// Creates tenant `to` as a copy of tenant `from` (not deleted), from one
/// consistent snapshot. The name defaults to the source's.
pub async fn clone_tenant(
    pool: &Pool,
    template: &[TemplateStep],
    from: &str,
    to: &str,
    name: Option<&str>,
    actor: &str,
) -> AppResult<Moved> {
    let slug = TenantSlug::parse(to).map_err(|e| AppError::bad_input("to", e.to_string()))?;
    let mut conn = pool.get().await?;
    AnsiTransactionManager::begin_transaction_sql(
        &mut *conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
    )
    .await?;
    let result = async {
        // Shared lock: the source cannot be migrated, deleted or purged
        // while it is copied.
        let source: Tenant = tenants::table
            .filter(tenants::slug.eq(from))
            .filter(tenants::status.ne(status::DELETED))
            .select(Tenant::as_select())
            .for_share()
            .first(&mut *conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found(Some("from"), format!("no tenant '{from}'")))?;
        if steps_upto(template, source.template_version).is_none() {
            return Err(AppError::conflict(
                "from",
                format!(
                    "tenant '{from}' is at template version {}, newer than this server's",
                    source.template_version
                ),
            ));
        }
        let name = provision::parse_name(name.unwrap_or(&source.name))?;
        let copy: Source<'_, std::io::Empty> = Source::Tenant {
            schema: source.parsed_slug()?.schema_name(),
        };
        let moved = build(
            &mut conn,
            template,
            &slug,
            &name,
            &source.plan_code,
            source.template_version,
            copy,
            actor,
        )
        .await?;
        lifecycle::record(
            &mut conn,
            &source,
            "exported",
            actor,
            &format!("cloned to '{}'", slug.as_str()),
        )
        .await?;
        Ok(moved)
    }
    .await;
    lifecycle::finish(&mut conn, result)
        .await
        .map_err(|e| match e {
            AppError::Conflict {
                message,
                field: Some("slug"),
            } => AppError::Conflict {
                message,
                field: Some("to"),
            },
            e => e,
        })
}

/// Template steps 1..=`version`, or `None` when the template stops short.
fn steps_upto(template: &[TemplateStep], version: i32) -> Option<&[TemplateStep]> {
    if version < 1 || version > latest_version(template) {
        return None;
    }
    Some(&template[..template.iter().position(|s| s.version == version)? + 1])
}

/// Inside a transaction: builds the new tenant from `source`.
#[allow(clippy::too_many_arguments)]
async fn build<R: BufRead>(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    slug: &TenantSlug,
    name: &str,
    plan: &str,
    version: i32,
    source: Source<'_, R>,
    actor: &str,
) -> AppResult<Moved> {
    let (steps, later) = template.split_at(
        steps_upto(template, version)
            .map(<[_]>::len)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("no template version {version}")))?,
    );
    let tenant = provision::create_schema(conn, steps, slug, name, plan).await?;
    let schema = ident(&slug.schema_name());
    let tables = tables_of(conn, &slug.schema_name()).await?;
    // What the template seeded gives way to the source's rows.
    conn.batch_execute(&format!(
        "TRUNCATE {}",
        tables
            .iter()
            .map(|t| t.quoted(&schema))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .await?;
    let (rows, action, how, audit_detail) = match source {
        Source::File {
            input,
            origin,
            tables: declared,
        } => {
            let shapes: Vec<&TableShape> = tables.iter().map(|t| &t.shape).collect();
            if declared.iter().ne(shapes.iter().copied()) {
                return Err(AppError::bad_input(
                    "file",
                    format!(
                        "the tables in {origin} do not match template version {version} of this server"
                    ),
                ));
            }
            let rows = load_file(conn, &tables, &schema, input, origin).await?;
            // The tenant's own audit trail gets the file's name, not where
            // it sat on the operator's machine.
            let name = std::path::Path::new(origin)
                .file_name()
                .map_or_else(|| origin.to_owned(), |n| n.to_string_lossy().into_owned());
            (
                rows,
                "imported",
                format!("imported from {origin}"),
                format!("imported from {name}"),
            )
        }
        Source::Tenant { schema: from } => {
            let source_tables = tables_of(conn, &from).await?;
            let same = source_tables.len() == tables.len()
                && source_tables
                    .iter()
                    .zip(&tables)
                    .all(|(a, b)| a.shape == b.shape);
            if !same {
                return Err(AppError::conflict(
                    "from",
                    format!(
                        "{from} does not match template version {version}; run `strata doctor`"
                    ),
                ));
            }
            let from_quoted = ident(&from);
            let mut rows = Vec::with_capacity(tables.len());
            for t in &tables {
                let cols = t.column_list();
                let n = diesel::sql_query(format!(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
                    t.quoted(&schema),
                    t.quoted(&from_quoted)
                ))
                .execute(conn)
                .await?;
                rows.push((t.shape.name.clone(), n as u64));
            }
            let origin = from.strip_prefix("tenant_").unwrap_or(&from).to_owned();
            let how = format!("cloned from '{origin}'");
            (rows, "cloned", how.clone(), how)
        }
    };
    provision::apply_steps(conn, later, slug).await?;
    let role = provision::role_of(&tenant)?;
    db_role::create(conn, slug, &role).await?;
    conn.batch_execute(REVOKE_CREDENTIALS).await?;
    audit::record(
        conn,
        audit::Who {
            kind: "admin",
            user: None,
        },
        &format!("tenant.{action}"),
        None,
        &audit_detail,
    )
    .await?;
    let tenant: Tenant = diesel::update(tenants::table.find(tenant.id))
        .set(tenants::template_version.eq(latest_version(template)))
        .returning(Tenant::as_returning())
        .get_result(conn)
        .await?;
    lifecycle::record(conn, &tenant, action, actor, &how).await?;
    Ok(Moved { tenant, rows })
}

/// Loads the rows of an export file, checking them against its end line.
async fn load_file(
    conn: &mut AsyncPgConnection,
    tables: &[Table],
    schema: &str,
    input: &mut impl BufRead,
    origin: &str,
) -> AppResult<Vec<(String, u64)>> {
    let by_name: HashMap<&str, &Table> =
        tables.iter().map(|t| (t.shape.name.as_str(), t)).collect();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending: Option<(&Table, String, usize)> = None;
    let mut line = String::new();
    let mut line_no = 1usize;
    let bad = |line_no: usize, what: String| {
        AppError::bad_input("file", format!("{origin}, line {line_no}: {what}"))
    };
    let mut next = |line: &mut String, line_no: &mut usize| {
        line.clear();
        *line_no += 1;
        input
            .read_line(line)
            .map_err(|e| bad(*line_no, format!("reading: {e}")))
    };
    let end = loop {
        if next(&mut line, &mut line_no)? == 0 {
            return Err(AppError::bad_input(
                "file",
                format!("{origin} ends before its end line: the file is truncated"),
            ));
        }
        let parsed: Line<'_> = serde_json::from_str(&line)
            .map_err(|e| bad(line_no, format!("not a valid line: {e}")))?;
        if let Some(end) = parsed.end {
            break end;
        }
        let (Some(table), Some(row)) = (parsed.table, parsed.row) else {
            return Err(bad(line_no, "expected a row or the end line".to_owned()));
        };
        let t = *by_name
            .get(table.as_str())
            .ok_or_else(|| bad(line_no, format!("unknown table {table:?}")))?;
        if pending
            .as_ref()
            .is_some_and(|(p, _, n)| !std::ptr::eq(*p, t) || (!p.self_ref && *n >= CHUNK))
        {
            let (p, batch, _) = pending.take().expect("checked above");
            insert_rows(conn, p, schema, batch, line_no).await?;
        }
        let (_, batch, n) = pending.get_or_insert_with(|| (t, String::from("["), 0));
        if *n > 0 {
            batch.push(',');
        }
        batch.push_str(row.get());
        *n += 1;
        *counts.entry(table).or_default() += 1;
    };
    if let Some((p, batch, _)) = pending.take() {
        insert_rows(conn, p, schema, batch, line_no).await?;
    }
    while next(&mut line, &mut line_no)? > 0 {
        if !line.trim().is_empty() {
            return Err(bad(line_no, "text after the end line".to_owned()));
        }
    }
    let declared: BTreeMap<String, u64> = end.rows.into_iter().filter(|(_, n)| *n > 0).collect();
    if declared != counts {
        return Err(AppError::bad_input(
            "file",
            format!("{origin} does not hold the rows its end line counts: the file is damaged"),
        ));
    }
    Ok(tables
        .iter()
        .map(|t| {
            let n = counts.get(&t.shape.name).copied().unwrap_or(0);
            (t.shape.name.clone(), n)
        })
        .collect())
}

async fn insert_rows(
    conn: &mut AsyncPgConnection,
    table: &Table,
    schema: &str,
    mut batch: String,
    line_no: usize,
) -> AppResult<()> {
    batch.push(']');
    let cols = table.column_list();
    let qualified = table.quoted(schema);
    diesel::sql_query(format!(
        "INSERT INTO {qualified} ({cols}) \
         SELECT {cols} FROM jsonb_populate_recordset(NULL::{qualified}, $1::jsonb)"
    ))
    .bind::<Text, _>(batch)
    .execute(conn)
    .await
    .map_err(|e| match &e {
        // The database or the connection failing is not the file's fault.
        diesel::result::Error::DatabaseError(
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection,
            _,
        ) => AppError::from(e),
        diesel::result::Error::DatabaseError(..) => AppError::bad_input(
            "file",
            format!(
                "rows of table {} before line {line_no} could not be loaded: {e}",
                table.shape.name
            ),
        ),
        _ => AppError::from(e),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, refs: &[&str]) -> CatalogTable {
        CatalogTable {
            name: name.to_owned(),
            columns: vec!["id".to_owned()],
            refs: refs.iter().map(|r| (*r).to_owned()).collect(),
            self_ref: false,
        }
    }

    #[test]
    fn tables_load_after_what_they_reference() {
        let order = load_order(vec![
            table("a_tasks", &["projects", "users"]),
            table("projects", &[]),
            table("users", &[]),
        ])
        .unwrap();
        let names: Vec<&str> = order.iter().map(|t| t.shape.name.as_str()).collect();
        assert_eq!(names, ["projects", "users", "a_tasks"]);
    }

    #[test]
    fn a_reference_cycle_is_refused() {
        assert!(load_order(vec![table("a", &["b"]), table("b", &["a"])]).is_err());
    }

    #[test]
    fn template_prefixes() {
        let t = crate::tenancy::template::TEMPLATE;
        assert_eq!(steps_upto(t, 1).map(<[_]>::len), Some(1));
        assert!(steps_upto(t, 0).is_none());
        assert!(steps_upto(t, latest_version(t) + 1).is_none());
    }
}
