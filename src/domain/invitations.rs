//! Invitations: an email, a role, a single-use token, an expiry. Every
//! function runs on a tenant-bound connection.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::auth;
use crate::db::schema::tenant::invitations;

/// How long an invitation stays open unless told otherwise.
pub const DEFAULT_DAYS: i64 = 7;

/// An invitation (never its token).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    /// `None` once the role was deleted (after the invitation closed).
    pub role_id: Option<Uuid>,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_user_id: Option<Uuid>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Invitation {
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub fn status(&self) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= Utc::now() {
            "expired"
        } else {
            "pending"
        }
    }
}

/// Creates an invitation; returns it and its token (shown once). An
/// expired invitation to the same email is closed first, so it can be
/// re-sent; a pending one is a `CONFLICT` (invitations_open_email_key).
pub async fn create(
    conn: &mut AsyncPgConnection,
    email: &str,
    role: Uuid,
    invited_by: Option<Uuid>,
    valid_for: Duration,
) -> QueryResult<(Invitation, String)> {
    diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
    let now = Utc::now();
    diesel::update(
        invitations::table
            .filter(lower(invitations::email).eq(email.to_lowercase()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.le(now)),
    )
    .set(invitations::revoked_at.eq(now))
    .execute(conn)
    .await?;
    let (id, secret) = (Uuid::now_v7(), auth::new_secret());
    let invitation = diesel::insert_into(invitations::table)
        .values((
            invitations::id.eq(id),
            invitations::email.eq(email),
            invitations::role_id.eq(role),
            invitations::token_hash.eq(auth::hash_secret(&secret)),
            invitations::invited_by.eq(invited_by),
            invitations::created_at.eq(now),
            invitations::expires_at.eq(now + valid_for),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await?;
    Ok((invitation, format!("{id}.{secret}")))
}

/// Invitations, newest first.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Invitation>> {
    invitations::table
        .select(Invitation::as_select())
        .order(invitations::id.desc())
        .limit(1000)
        .load(conn)
        .await
}

/// Revokes an open invitation; `None` if there is none with that id.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Invitation>> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(Utc::now()))
    .returning(Invitation::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// The open invitation a token belongs to, locked for acceptance; `None`
/// for a wrong, used, revoked or expired token.
pub async fn claim(conn: &mut AsyncPgConnection, raw: &str) -> QueryResult<Option<Invitation>> {
    let Some((id, secret)) = auth::split_token(raw) else {
        return Ok(None);
    };
    let found: Option<(Vec<u8>, Invitation)> = invitations::table
        .find(id)
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(Utc::now()))
        .select((invitations::token_hash, Invitation::as_select()))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    Ok(found
        .filter(|(hash, _)| auth::secret_matches(secret, hash))
        .map(|(_, inv)| inv))
}

/// Marks an invitation accepted by `user`.
pub async fn mark_accepted(conn: &mut AsyncPgConnection, id: Uuid, user: Uuid) -> QueryResult<()> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::accepted_at.eq(Utc::now()),
            invitations::accepted_user_id.eq(user),
        ))
        .execute(conn)
        .await
        .map(drop)
}
