//! Hand-written statements that stay prepared on their connection.
//!
//! diesel never caches a `sql_query` (its text is usually built at run
//! time), so PostgreSQL parses it again on every call. The hot fixed
//! statements a request runs (the credential check, a page of tasks per
//! project) are [`Cached`] instead: constant text, so diesel prepares each
//! once per connection and reuses it. They name tables without a schema and
//! run inside a tenant binding: one statement per connection serves every
//! tenant, where schema-qualified text would prepare one per tenant.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Untyped, Uuid as SqlUuid};
use uuid::Uuid;

/// A statement with fixed text whose placeholders `$1`, `$2` ... each appear
/// once, in order, and `params` to bind to them (see the module docs).
/// Load rows with `QueryableByName` types, as from `sql_query`, or, once
/// [`Cached::rows`] has named the columns' SQL types, by position.
#[derive(Debug, Clone)]
pub struct Cached<P, ST = Untyped> {
    sql: &'static str,
    params: P,
    rows: PhantomData<ST>,
}

/// `sql` must be a constant (its text is the cache key) and `params` a
/// tuple binding its placeholders in order.
pub fn cached<P: Params>(sql: &'static str, params: P) -> Cached<P> {
    Cached {
        sql,
        params,
        rows: PhantomData,
    }
}

impl<P: Params> Cached<P> {
    /// The same statement, its rows of SQL type `ST` (the columns it
    /// selects, in order), loaded by position: a hot statement's many rows
    /// then skip finding every column by name.
    pub fn rows<ST>(self) -> Cached<P, ST> {
        Cached {
            sql: self.sql,
            params: self.params,
            rows: PhantomData,
        }
    }
}

/// One value bound to a placeholder, with its SQL type.
pub trait Param {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl Param for Uuid {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<SqlUuid, _>(self)
    }
}

impl Param for Option<Uuid> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Nullable<SqlUuid>, _>(self)
    }
}

impl Param for Vec<Uuid> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<SqlUuid>, _>(self)
    }
}

impl Param for Option<String> {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Nullable<Text>, _>(self)
    }
}

impl Param for i64 {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<BigInt, _>(self)
    }
}

/// The values for a statement's placeholders, in order.
pub trait Params {
    /// How many values there are: the statement must have that many placeholders.
    const LEN: usize;
    /// Binds the `i`th value (0-based).
    fn push<'b>(&'b self, i: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

macro_rules! params {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Param),+> Params for ($($t,)+) {
            const LEN: usize = [$($i),+].len();
            fn push<'b>(&'b self, i: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                match i {
                    $($i => self.$i.push(out),)+
                    _ => Err(diesel::result::Error::QueryBuilderError(
                        format!("no value for placeholder ${}", i + 1).into(),
                    )),
                }
            }
        }
    };
}

params!(A 0);
params!(A 0, B 1);
params!(A 0, B 1, C 2);
params!(A 0, B 1, C 2, D 3);
params!(A 0, B 1, C 2, D 3, E 4, F 5);

impl<P: Params, ST> QueryFragment<Pg> for Cached<P, ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // diesel writes `$n` for each bind, numbering them itself: push the
        // text between the placeholders and bind in their place.
        let mut rest = self.sql;
        let mut next = 0;
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                out.push_sql(&rest[..=at]);
                rest = &rest[at + 1..];
                continue;
            }
            let n: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
            if n != next + 1 {
                return Err(diesel::result::Error::QueryBuilderError(
                    format!("placeholder ${n} out of order (expected ${})", next + 1).into(),
                ));
            }
            out.push_sql(&rest[..at]);
            self.params.push(next, &mut out)?;
            next += 1;
            rest = &rest[at + 1 + digits..];
        }
        if next != P::LEN {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("{} values for {next} placeholders", P::LEN).into(),
            ));
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<P, ST> QueryId for Cached<P, ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<P: Params, ST: 'static> Query for Cached<P, ST> {
    type SqlType = ST;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builds<P: Params>(q: &Cached<P>) -> bool {
        QueryFragment::<Pg>::to_sql(
            q,
            &mut <Pg as diesel::backend::Backend>::QueryBuilder::default(),
            &Pg,
        )
        .is_ok()
    }

    fn sql_of<P: Params>(q: &Cached<P>) -> String {
        diesel::debug_query::<Pg, _>(q).to_string()
    }

    #[test]
    fn binds_in_place_of_each_placeholder_and_keeps_other_dollars() {
        let q = cached("SELECT $1::uuid, '$x', $2 + 1, $$a$$", (Uuid::nil(), 7i64));
        let shown = sql_of(&q);
        assert!(
            shown.starts_with("SELECT $1::uuid, '$x', $2 + 1, $$a$$ -- binds: ["),
            "{shown}"
        );
    }

    #[test]
    fn out_of_order_placeholders_are_an_error_not_a_wrong_bind() {
        let q = cached("SELECT $2, $1", (1i64, 2i64));
        assert!(!builds(&q));
    }

    #[test]
    fn a_value_left_over_is_an_error_not_ignored() {
        let q = cached("SELECT $1", (1i64, 2i64));
        assert!(!builds(&q));
    }

    #[test]
    fn is_safe_to_cache() {
        let q = cached("SELECT $1, $2", (1i64, 2i64));
        assert!(builds(&q));
        assert!(QueryFragment::<Pg>::is_safe_to_cache_prepared(&q, &Pg).unwrap());
    }
}
