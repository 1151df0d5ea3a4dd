//! Plans (seeded by the management migrations) and their limits.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::management::plans;

/// A plan and its limits; `None` means unlimited.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = plans)]
pub struct Plan {
    pub code: String,
    pub name: String,
    pub price_cents: i32,
    pub max_seats: Option<i32>,
    pub max_projects: Option<i32>,
    pub api_calls_per_month: i64,
    pub storage_gb: i32,
    pub hipaa: bool,
}

/// Every plan, cheapest first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Plan>> {
    plans::table
        .order(plans::sort_order.asc())
        .select(Plan::as_select())
        .load(conn)
        .await
}

/// The plan with `code`.
pub async fn find(conn: &mut AsyncPgConnection, code: &str) -> QueryResult<Option<Plan>> {
    plans::table
        .find(code)
        .select(Plan::as_select())
        .first(conn)
        .await
        .optional()
}
