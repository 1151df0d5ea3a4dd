//! `strata doctor`: checks that the database keeps its tenants apart.
//!
//! Every check reads the catalog directly, so it sees what PostgreSQL will
//! enforce, not what Strata meant to create:
//!
//! - every tenant row has its schema, and every `tenant_*` schema its row;
//! - each tenant's schema is exactly what its recorded template version
//!   builds (compared with a reference schema built from the template in a
//!   transaction that is rolled back);
//! - no tenant object depends on another schema (foreign keys, views,
//!   defaults, column types, function bodies naming another schema), and no
//!   foreign key joins a tenant schema to the management schema;
//! - each tenant's database role exists, cannot log in or escalate, uses its
//!   own schema, has no rights anywhere else, belongs to no other role and
//!   owns nothing; nobody else (`PUBLIC`, another tenant's role) has rights
//!   on a tenant schema or the management schema.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use diesel::QueryableByName;
use diesel::sql_types::{Array, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};

use crate::tenancy::template::{TemplateStep, latest_version};

/// The schema the reference for each template version is built in (and
/// rolled back).
const REFERENCE: &str = "strata_doctor_reference";
/// Differences listed per tenant before "and N more".
const SHOWN: usize = 5;

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// What kind of problem, e.g. `schema without tenant`.
    pub check: &'static str,
    /// The tenant, schema or role it is about.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.check, self.subject, self.detail)
    }
}

/// What `strata doctor` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Tenant rows checked.
    pub tenants: usize,
    /// `tenant_*` schemas checked.
    pub schemas: usize,
    /// Every problem, sorted.
    pub findings: Vec<Finding>,
}

impl Report {
    /// No finding.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    fn add(&mut self, check: &'static str, subject: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            check,
            subject: subject.into(),
            detail: detail.into(),
        });
    }
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = Text)]
    slug: String,
    #[diesel(sql_type = Text)]
    schema_name: String,
    #[diesel(sql_type = Integer)]
    template_version: i32,
    #[diesel(sql_type = Nullable<Text>)]
    db_role: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    nspname: Option<String>,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Fingerprint {
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Text)]
    digest: String,
}

#[derive(QueryableByName)]
struct Lines {
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Array<Text>)]
    lines: Vec<String>,
}

/// A finding produced in SQL.
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    detail: String,
}

/// Describes every object of the schemas in `$1`, one line each, with the
/// schema's own name taken out of definitions so that two schemas built
/// alike describe alike.
///
/// Each branch joins its catalog to the schemas once (a hash join), rather
/// than scanning the catalog per schema: at a thousand tenants that is the
/// difference between a second and minutes.
const DESCRIBE: &str = "\
    WITH s AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1)) \
    SELECT x.schema::text AS schema, replace(x.raw, x.schema || '.', '') AS line FROM ( \
        SELECT s.nspname, format('relation %s (%s)', c.relname, c.relkind) \
        FROM pg_class c JOIN s ON s.oid = c.relnamespace \
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
      UNION ALL \
        SELECT s.nspname, format('column %s.%s %s%s%s', c.relname, a.attname, \
                      format_type(a.atttypid, a.atttypmod), \
                      CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, \
                      coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')) \
        FROM pg_class c JOIN s ON s.oid = c.relnamespace \
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
        LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum \
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
      UNION ALL \
        SELECT s.nspname, format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid)) \
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN s ON s.oid = c.relnamespace \
      UNION ALL \
        SELECT s.nspname, format('index %s', pg_get_indexdef(i.indexrelid)) \
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN s ON s.oid = c.relnamespace \
      UNION ALL \
        SELECT s.nspname, format('view %s %s', c.relname, pg_get_viewdef(c.oid)) \
        FROM pg_class c JOIN s ON s.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') \
      UNION ALL \
        SELECT s.nspname, format('function %s(%s) %s', p.proname, \
                      pg_get_function_identity_arguments(p.oid), md5(p.prosrc)) \
        FROM pg_proc p JOIN s ON s.oid = p.pronamespace \
      UNION ALL \
        SELECT s.nspname, format('trigger %s (enabled: %s)', pg_get_triggerdef(t.oid), t.tgenabled) \
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN s ON s.oid = c.relnamespace \
        WHERE NOT t.tgisinternal \
      UNION ALL \
        SELECT s.nspname, format('type %s (%s)', t.typname, t.typtype) \
        FROM pg_type t JOIN s ON s.oid = t.typnamespace \
        LEFT JOIN pg_class c ON c.oid = t.typrelid \
        WHERE t.typtype IN ('e', 'd', 'c', 'r') AND (t.typrelid = 0 OR c.relkind = 'c') \
    ) AS x(schema, raw)";

/// Checks the whole database against `template`.
pub async fn check(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let tenants: Vec<TenantRow> = diesel::sql_query(
        "SELECT t.slug, t.schema_name, t.template_version, t.db_role, n.nspname::text AS nspname \
         FROM management.tenants t LEFT JOIN pg_namespace n ON n.nspname = t.schema_name \
         ORDER BY t.slug",
    )
    .load(conn)
    .await?;
    report.tenants = tenants.len();
    let schemas: Vec<Name> = diesel::sql_query(
        "SELECT nspname::text AS name FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY 1",
    )
    .load(conn)
    .await?;
    report.schemas = schemas.len();

    let recorded: BTreeSet<&str> = tenants.iter().map(|t| t.schema_name.as_str()).collect();
    for t in &tenants {
        if t.schema_name != format!("tenant_{}", t.slug) {
            report.add(
                "tenant row",
                &t.slug,
                format!(
                    "records schema {} instead of tenant_{}",
                    t.schema_name, t.slug
                ),
            );
        }
        if t.nspname.is_none() {
            report.add(
                "tenant without schema",
                &t.slug,
                format!("schema {} does not exist", t.schema_name),
            );
        }
    }
    for s in &schemas {
        if !recorded.contains(s.name.as_str()) {
            report.add(
                "schema without tenant",
                &s.name,
                "no row in management.tenants records this schema",
            );
        }
    }

    check_versions(conn, template, &tenants, &mut report).await?;
    check_references(conn, &mut report).await?;
    check_roles(conn, &tenants, &mut report).await?;
    report.findings.sort();
    report.findings.dedup();
    Ok(report)
}

/// Each schema is what its recorded template version builds.
async fn check_versions(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    tenants: &[TenantRow],
    report: &mut Report,
) -> anyhow::Result<()> {
    let present: Vec<&TenantRow> = tenants.iter().filter(|t| t.nspname.is_some()).collect();
    let names: Vec<String> = present.iter().map(|t| t.schema_name.clone()).collect();
    let digests: BTreeMap<String, String> = fingerprints(conn, &names).await?;
    let latest = latest_version(template);
    let versions: BTreeSet<i32> = present.iter().map(|t| t.template_version).collect();
    for version in versions {
        let of_version: Vec<&&TenantRow> = present
            .iter()
            .filter(|t| t.template_version == version)
            .collect();
        if version < 0 || version > latest {
            for t in of_version {
                report.add(
                    "template version",
                    &t.slug,
                    format!("records version {version}; this server's template ends at {latest}"),
                );
            }
            continue;
        }
        let (reference_digest, reference_lines) = reference(conn, template, version).await?;
        let differing: Vec<String> = of_version
            .iter()
            .filter(|t| digests.get(&t.schema_name) != Some(&reference_digest))
            .map(|t| t.schema_name.clone())
            .collect();
        if differing.is_empty() {
            continue;
        }
        let mut described: BTreeMap<String, Vec<String>> = describe(conn, &differing)
            .await?
            .into_iter()
            .map(|l| (l.schema, l.lines))
            .collect();
        for schema in &differing {
            // A schema with nothing in it describes as no lines at all.
            let lines: BTreeSet<String> = described
                .remove(schema)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let extra: Vec<&String> = lines.difference(&reference_lines).collect();
            let missing: Vec<&String> = reference_lines.difference(&lines).collect();
            let slug = schema.strip_prefix("tenant_").unwrap_or(schema);
            report.add(
                "template version",
                slug,
                format!(
                    "schema differs from template version {version}: {}",
                    summarize(&extra, &missing)
                ),
            );
        }
    }
    Ok(())
}

fn summarize(extra: &[&String], missing: &[&String]) -> String {
    let list = |what: &str, items: &[&String]| {
        if items.is_empty() {
            return None;
        }
        let shown: Vec<&str> = items.iter().take(SHOWN).map(|s| s.as_str()).collect();
        let more = items.len().saturating_sub(SHOWN);
        Some(if more > 0 {
            format!("{what} [{}] and {more} more", shown.join("; "))
        } else {
            format!("{what} [{}]", shown.join("; "))
        })
    };
    [list("extra", extra), list("missing", missing)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

async fn fingerprints(
    conn: &mut AsyncPgConnection,
    schemas: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let rows: Vec<Fingerprint> = diesel::sql_query(format!(
        "SELECT schema, md5(string_agg(line, E'\\n' ORDER BY line COLLATE \"C\")) AS digest \
         FROM ({DESCRIBE}) d GROUP BY schema"
    ))
    .bind::<Array<Text>, _>(schemas)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.schema, r.digest)).collect())
}

async fn describe(conn: &mut AsyncPgConnection, schemas: &[String]) -> anyhow::Result<Vec<Lines>> {
    Ok(diesel::sql_query(format!(
        "SELECT schema, array_agg(line ORDER BY line COLLATE \"C\") AS lines \
         FROM ({DESCRIBE}) d GROUP BY schema ORDER BY schema"
    ))
    .bind::<Array<Text>, _>(schemas)
    .load(conn)
    .await?)
}

/// The fingerprint and lines of a schema built by template steps
/// 1..=`version`, in a transaction that is rolled back.
async fn reference(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    version: i32,
) -> anyhow::Result<(String, BTreeSet<String>)> {
    let built = async {
        conn.batch_execute(&format!(
            "BEGIN; CREATE SCHEMA {REFERENCE}; SET LOCAL search_path TO {REFERENCE}"
        ))
        .await?;
        for step in template.iter().filter(|s| s.version <= version) {
            conn.batch_execute(step.sql).await.map_err(|e| {
                anyhow::anyhow!(
                    "building template version {} ({}): {e}",
                    step.version,
                    step.name
                )
            })?;
        }
        let names = [REFERENCE.to_owned()];
        let digest = fingerprints(conn, &names)
            .await?
            .remove(REFERENCE)
            .unwrap_or_default();
        let lines = describe(conn, &names)
            .await?
            .into_iter()
            .flat_map(|l| l.lines)
            .collect();
        Ok::<_, anyhow::Error>((digest, lines))
    }
    .await;
    // Also after a failed BEGIN batch: ROLLBACK outside a transaction only warns.
    conn.batch_execute("ROLLBACK").await?;
    built
}

/// No tenant object depends on another schema; no foreign key crosses
/// between schemas where a tenant schema is one side.
async fn check_references(conn: &mut AsyncPgConnection, report: &mut Report) -> anyhow::Result<()> {
    let foreign_keys: Vec<Found> = diesel::sql_query(
        "SELECT format('%s.%s', a.nspname, c.relname) AS subject, \
                format('foreign key %s references %s.%s', k.conname, b.nspname, r.relname) AS detail \
         FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace a ON a.oid = c.relnamespace \
         JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace b ON b.oid = r.relnamespace \
         WHERE k.contype = 'f' AND a.oid <> b.oid \
           AND (a.nspname LIKE 'tenant\\_%' OR b.nspname LIKE 'tenant\\_%')",
    )
    .load(conn)
    .await?;
    for f in foreign_keys {
        report.add("foreign key across schemas", f.subject, f.detail);
    }
    // Everything else PostgreSQL tracks: views, defaults, column types,
    // triggers, functions with SQL-standard bodies.
    let depends: Vec<Found> = diesel::sql_query(
        "WITH objs(classid, objid, nsp, name) AS ( \
             SELECT 'pg_class'::regclass, c.oid, c.relnamespace, c.relname::text FROM pg_class c \
             UNION ALL SELECT 'pg_type'::regclass, t.oid, t.typnamespace, t.typname::text FROM pg_type t \
             UNION ALL SELECT 'pg_proc'::regclass, p.oid, p.pronamespace, p.proname::text FROM pg_proc p \
             UNION ALL SELECT 'pg_constraint'::regclass, k.oid, k.connamespace, k.conname::text \
                 FROM pg_constraint k WHERE k.contype <> 'f' \
             UNION ALL SELECT 'pg_attrdef'::regclass, d.oid, c.relnamespace, c.relname || ' default' \
                 FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid \
             UNION ALL SELECT 'pg_rewrite'::regclass, r.oid, c.relnamespace, c.relname::text \
                 FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class \
             UNION ALL SELECT 'pg_trigger'::regclass, t.oid, c.relnamespace, c.relname || ' trigger ' || t.tgname \
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         ) \
         SELECT DISTINCT format('%s.%s', an.nspname, a.name) AS subject, \
                format('depends on %s.%s', bn.nspname, b.name) AS detail \
         FROM pg_depend d \
         JOIN objs a ON a.classid = d.classid AND a.objid = d.objid \
         JOIN objs b ON b.classid = d.refclassid AND b.objid = d.refobjid \
         JOIN pg_namespace an ON an.oid = a.nsp JOIN pg_namespace bn ON bn.oid = b.nsp \
         WHERE a.nsp <> b.nsp AND an.nspname LIKE 'tenant\\_%' \
           AND bn.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .load(conn)
    .await?;
    for f in depends {
        report.add("reference to another schema", f.subject, f.detail);
    }
    // Function bodies are text PostgreSQL does not track.
    let bodies: Vec<Found> = diesel::sql_query(
        "SELECT DISTINCT format('%s.%s', n.nspname, p.proname) AS subject, \
                format('function body names schema %s', m[1]) AS detail \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, \
              regexp_matches(lower(p.prosrc), '\\m\"?(management|tenant_[a-z0-9_]+)\"?\\s*\\.', 'g') AS m \
         WHERE n.nspname LIKE 'tenant\\_%' AND m[1] <> n.nspname",
    )
    .load(conn)
    .await?;
    for f in bodies {
        report.add("reference to another schema", f.subject, f.detail);
    }
    Ok(())
}

/// Each tenant role is confined to its own schema, and nobody else has
/// rights on a tenant schema or the management schema.
async fn check_roles(
    conn: &mut AsyncPgConnection,
    tenants: &[TenantRow],
    report: &mut Report,
) -> anyhow::Result<()> {
    let existing: Vec<Name> = diesel::sql_query(
        "SELECT rolname::text AS name FROM pg_roles r \
         WHERE rolname IN (SELECT db_role FROM management.tenants) \
           AND NOT rolcanlogin AND NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb \
           AND NOT rolreplication AND NOT rolbypassrls",
    )
    .load(conn)
    .await?;
    let sound: BTreeSet<&str> = existing.iter().map(|n| n.name.as_str()).collect();
    for t in tenants {
        match t.db_role.as_deref() {
            None => report.add(
                "tenant role",
                &t.slug,
                "has no database role (run `strata migrate`)",
            ),
            Some(role) if !sound.contains(role) => report.add(
                "tenant role",
                &t.slug,
                format!(
                    "role {role} is missing, or can log in, or has a superuser, CREATEROLE, \
                     CREATEDB, REPLICATION or BYPASSRLS attribute"
                ),
            ),
            Some(_) => {}
        }
    }
    let lacking: Vec<Found> = diesel::sql_query(
        "SELECT t.slug AS subject, format('role %s cannot use its own schema', t.db_role) AS detail \
         FROM management.tenants t JOIN pg_roles r ON r.rolname = t.db_role \
         JOIN pg_namespace n ON n.nspname = t.schema_name \
         WHERE NOT has_schema_privilege(r.oid, n.oid, 'USAGE')",
    )
    .load(conn)
    .await?;
    for f in lacking {
        report.add("tenant role", f.subject, f.detail);
    }
    // Every explicit grant in the database, with the schema it is in.
    let grants: Vec<Found> = diesel::sql_query(
        "WITH tr AS ( \
             SELECT t.slug, t.schema_name, r.oid AS role, r.rolname::text AS rolname \
             FROM management.tenants t JOIN pg_roles r ON r.rolname = t.db_role \
         ), acl(kind, schema, object, grantee, privilege) AS ( \
             SELECT 'schema', n.nspname::text, n.nspname::text, a.grantee, a.privilege_type \
             FROM pg_namespace n, aclexplode(n.nspacl) a \
             UNION ALL \
             SELECT 'relation', n.nspname::text, n.nspname || '.' || c.relname, a.grantee, a.privilege_type \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a \
             UNION ALL \
             SELECT 'function', n.nspname::text, n.nspname || '.' || p.proname, a.grantee, a.privilege_type \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a \
             UNION ALL \
             SELECT 'database', '', d.datname::text, a.grantee, a.privilege_type \
             FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() \
             UNION ALL \
             SELECT 'default privileges', coalesce(n.nspname::text, ''), \
                    'future objects in ' || coalesce(n.nspname::text, 'every schema'), \
                    a.grantee, a.privilege_type \
             FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, \
                  aclexplode(d.defaclacl) a \
         ) \
         SELECT tr.slug AS subject, \
                format('role %s has %s on %s %s', tr.rolname, acl.privilege, acl.kind, acl.object) AS detail \
         FROM acl JOIN tr ON tr.role = acl.grantee \
         WHERE acl.schema <> tr.schema_name \
         UNION ALL \
         SELECT acl.object, format('PUBLIC has %s on %s %s', acl.privilege, acl.kind, acl.object) \
         FROM acl \
         WHERE acl.grantee = 0 AND acl.kind IN ('schema', 'relation', 'default privileges') \
           AND (acl.schema LIKE 'tenant\\_%' OR acl.schema = 'management')",
    )
    .load(conn)
    .await?;
    for f in grants {
        report.add("grant across tenants", f.subject, f.detail);
    }
    let memberships: Vec<Found> = diesel::sql_query(
        "SELECT t.slug AS subject, format('role %s is a member of role %s', m.rolname, g.rolname) AS detail \
         FROM management.tenants t JOIN pg_roles m ON m.rolname = t.db_role \
         JOIN pg_auth_members am ON am.member = m.oid JOIN pg_roles g ON g.oid = am.roleid",
    )
    .load(conn)
    .await?;
    for f in memberships {
        report.add("grant across tenants", f.subject, f.detail);
    }
    let owned: Vec<Found> = diesel::sql_query(
        "SELECT t.slug AS subject, \
                format('role %s owns %s', r.rolname, pg_describe_object(s.classid, s.objid, s.objsubid)) AS detail \
         FROM management.tenants t JOIN pg_roles r ON r.rolname = t.db_role \
         JOIN pg_shdepend s ON s.refobjid = r.oid AND s.deptype = 'o' \
         WHERE s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
    )
    .load(conn)
    .await?;
    for f in owned {
        report.add("tenant role", f.subject, f.detail);
    }
    // A role named like a tenant's that holds rights here but belongs to no
    // tenant: left behind, and a way in for whoever can switch to it.
    let strays: Vec<Found> = diesel::sql_query(
        "SELECT DISTINCT r.rolname::text AS subject, \
                'holds rights or objects in this database but belongs to no tenant' AS detail \
         FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid \
         WHERE s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) \
           AND r.rolname LIKE 'tenant\\_%' \
           AND r.rolname NOT IN (SELECT db_role FROM management.tenants WHERE db_role IS NOT NULL)",
    )
    .load(conn)
    .await?;
    for f in strays {
        report.add("stray tenant role", f.subject, f.detail);
    }
    Ok(())
}
