//! The tenant's audit trail of access changes, written in the same
//! transaction as the change it records.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::tenant::audit_events;

/// One recorded change.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `user`, `admin`, `api_key` or `anonymous`.
    pub actor_kind: String,
    pub actor_user_id: Option<Uuid>,
    /// What happened, e.g. `role.assigned`.
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<Uuid>,
    pub detail: String,
}

/// Who made a change, for the record.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub kind: &'static str,
    pub user: Option<Uuid>,
}

/// Records a change.
pub async fn record(
    conn: &mut AsyncPgConnection,
    who: Who,
    action: &str,
    target: Option<(&str, Uuid)>,
    detail: &str,
) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::id.eq(Uuid::now_v7()),
            audit_events::actor_kind.eq(who.kind),
            audit_events::actor_user_id.eq(who.user),
            audit_events::action.eq(action),
            audit_events::target_type.eq(target.map(|t| t.0)),
            audit_events::target_id.eq(target.map(|t| t.1)),
            audit_events::detail.eq(detail),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// A page of events, newest first, before `before`; one more than `limit`
/// tells if more follow.
pub async fn page(
    conn: &mut AsyncPgConnection,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table
        .select(AuditEvent::as_select())
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    query.load(conn).await
}
