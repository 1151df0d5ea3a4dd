//! The PostgreSQL role each tenant's transactions run under.
//!
//! A tenant's role may use its own schema and nothing else: no rights on the
//! management schema or on any other tenant's schema. Tenant transactions
//! switch to it together with the search_path (see [`crate::tenancy::conn`]),
//! so SQL that names another tenant's table outright is refused by
//! PostgreSQL itself, not just by our query building.
//!
//! Roles are cluster-wide while tenants live in one database; the name ends
//! in 12 random hex digits so that databases sharing a cluster (every test
//! database, say) never collide.

use std::fmt;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};

use crate::db::schema::management::tenants;
use crate::tenancy::TenantSlug;

/// A validated role name: `[a-z][a-z0-9_]{1,62}`, so it needs no quoting
/// beyond the double quotes it always gets in DDL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbRole(String);

impl DbRole {
    /// A fresh name for `slug`'s role: `tenant_<slug>_<12 hex digits>`.
    pub fn generate(slug: &TenantSlug) -> Self {
        let suffix: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
        Self(format!("tenant_{}_{suffix:012x}", slug.as_str()))
    }

    /// Checks a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut chars = raw.chars();
        let valid = (2..=63).contains(&raw.len())
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        valid.then(|| Self(raw.to_owned()))
    }

    /// The bare name (as `set_config('role', ...)` takes it).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted identifier, for DDL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for DbRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates `role` with rights on `slug`'s schema only (tables and sequences
/// there now and later), and lets the server's own user switch to it.
/// Transactional: rolled back with the transaction it runs in.
pub async fn create(
    conn: &mut AsyncPgConnection,
    slug: &TenantSlug,
    role: &DbRole,
) -> QueryResult<()> {
    create_for_schema(conn, &slug.quoted_schema(), role).await
}

/// [`create`] for a schema named outright (a warm-pool schema, which gets
/// its tenant's name when claimed). `schema` is a quoted identifier built
/// from a validated name.
pub(crate) async fn create_for_schema(
    conn: &mut AsyncPgConnection,
    schema: &str,
    role: &DbRole,
) -> QueryResult<()> {
    let role = role.quoted();
    conn.batch_execute(&format!(
        "CREATE ROLE {role} NOLOGIN NOINHERIT; \
         GRANT {role} TO CURRENT_USER; \
         GRANT USAGE ON SCHEMA {schema} TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}; \
         ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}; \
         ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} \
             GRANT USAGE, SELECT ON SEQUENCES TO {role}"
    ))
    .await
}

/// Gives every tenant that has no role yet (made before roles existed) its
/// role, one transaction per tenant. Returns how many were given one.
pub async fn backfill(conn: &mut AsyncPgConnection) -> anyhow::Result<usize> {
    let missing: Vec<(uuid::Uuid, String)> = tenants::table
        .filter(tenants::db_role.is_null())
        .select((tenants::id, tenants::slug))
        .load(conn)
        .await?;
    let mut done = 0;
    for (id, slug) in missing {
        let slug = TenantSlug::parse(&slug)
            .map_err(|e| anyhow::anyhow!("tenant {id} has an invalid slug {slug:?}: {e}"))?;
        let role = DbRole::generate(&slug);
        conn.batch_execute("BEGIN").await?;
        let result = async {
            let updated =
                diesel::update(tenants::table.find(id).filter(tenants::db_role.is_null()))
                    .set(tenants::db_role.eq(role.as_str()))
                    .execute(conn)
                    .await?;
            if updated == 1 {
                create(conn, &slug, &role).await?;
            }
            Ok::<_, diesel::result::Error>(updated)
        }
        .await;
        match result {
            Ok(n) => {
                conn.batch_execute("COMMIT").await?;
                done += n;
            }
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK").await;
                return Err(anyhow::anyhow!("creating the database role of {slug}: {e}"));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_distinct_and_fit() {
        let slug = TenantSlug::parse(&format!("a{}", "b".repeat(39))).unwrap();
        let (a, b) = (DbRole::generate(&slug), DbRole::generate(&slug));
        assert_ne!(a, b);
        assert!(a.as_str().len() <= 63, "{a}");
        assert_eq!(DbRole::parse(a.as_str()), Some(a));
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        for bad in ["", "A", "x\"y", "a b", "1abc", "a;drop", &"a".repeat(64)] {
            assert!(DbRole::parse(bad).is_none(), "{bad:?}");
        }
    }
}
