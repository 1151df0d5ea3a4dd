//! Sessions and refresh tokens, and sign-in throttling. Every function runs
//! on a tenant-bound connection.
//!
//! A session is one sign-in. Its refresh tokens form a family: each refresh
//! spends the token presented and issues the next. Presenting a spent token
//! again means it was copied, so the whole session is revoked.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::auth;
use crate::db::schema::tenant::{login_attempts, refresh_tokens, sessions, users};

/// A session as its user sees it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
}

/// Starts a session for `user`; returns it and its first refresh token.
pub async fn start(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    lifetime: Duration,
    user_agent: Option<&str>,
) -> QueryResult<(Session, String)> {
    let now = Utc::now();
    let session: Session = diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(Uuid::now_v7()),
            sessions::user_id.eq(user),
            sessions::created_at.eq(now),
            sessions::last_used_at.eq(now),
            sessions::expires_at.eq(now + lifetime),
            sessions::user_agent.eq(user_agent.map(|ua| ua.chars().take(300).collect::<String>())),
        ))
        .returning(Session::as_returning())
        .get_result(conn)
        .await?;
    let token = issue_refresh(conn, session.id).await?;
    Ok((session, token))
}

async fn issue_refresh(conn: &mut AsyncPgConnection, session: Uuid) -> QueryResult<String> {
    let (id, secret) = (Uuid::now_v7(), auth::new_secret());
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::id.eq(id),
            refresh_tokens::session_id.eq(session),
            refresh_tokens::token_hash.eq(auth::hash_secret(&secret)),
        ))
        .execute(conn)
        .await?;
    Ok(format!("{id}.{secret}"))
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Refreshed {
    /// A new refresh token for the session (the presented one is spent).
    Rotated { session: Session, token: String },
    /// Unknown, wrong, expired or revoked: nothing changed.
    Invalid,
    /// A spent token came back: the session is now revoked.
    Reused,
    /// The user is disabled.
    Disabled,
}

/// Spends a refresh token and issues the next one of its family.
pub async fn refresh(conn: &mut AsyncPgConnection, raw: &str) -> QueryResult<Refreshed> {
    let Some((id, secret)) = auth::split_token(raw) else {
        return Ok(Refreshed::Invalid);
    };
    // Locking the token's row makes two refreshes with one token run one
    // after the other: the second sees it spent.
    let found: Option<(Vec<u8>, Option<DateTime<Utc>>, Session)> = refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::id.eq(id))
        .select((
            refresh_tokens::token_hash,
            refresh_tokens::used_at,
            Session::as_select(),
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((hash, used_at, session)) = found else {
        return Ok(Refreshed::Invalid);
    };
    if !auth::secret_matches(secret, &hash)
        || session.revoked_at.is_some()
        || session.expires_at <= Utc::now()
    {
        return Ok(Refreshed::Invalid);
    }
    if used_at.is_some() {
        revoke(conn, session.id, "refresh token reused").await?;
        crate::domain::audit::record(
            conn,
            crate::domain::audit::Who {
                kind: "anonymous",
                user: None,
            },
            "session.revoked",
            Some(("session", session.id)),
            "refresh token reused",
        )
        .await?;
        return Ok(Refreshed::Reused);
    }
    let disabled: bool = users::table
        .find(session.user_id)
        .select(users::disabled_at.is_not_null())
        .first(conn)
        .await
        .optional()?
        .unwrap_or(true);
    if disabled {
        return Ok(Refreshed::Disabled);
    }
    let now = Utc::now();
    diesel::update(refresh_tokens::table.find(id))
        .set(refresh_tokens::used_at.eq(now))
        .execute(conn)
        .await?;
    let session = diesel::update(sessions::table.find(session.id))
        .set(sessions::last_used_at.eq(now))
        .returning(Session::as_returning())
        .get_result(conn)
        .await?;
    let token = issue_refresh(conn, session.id).await?;
    Ok(Refreshed::Rotated { session, token })
}

/// Revokes a session (its access tokens stop working at once and its
/// refresh tokens can no longer be used). False if it was not live.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid, reason: &str) -> QueryResult<bool> {
    diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Revokes every live session of `user` except `keep`.
pub async fn revoke_all(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep.unwrap_or(Uuid::nil()))),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
    .await
}

/// The session with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Session>> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user's live sessions, newest first.
pub async fn live_of(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(Utc::now()))
        .select(Session::as_select())
        .order(sessions::id.desc())
        .limit(200)
        .load(conn)
        .await
}

/// How sign-in attempts for one email are throttled.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Failed attempts answered without delay.
    pub free_failures: i32,
    /// Added delay per failure beyond those, capped at `max_delay`.
    pub step: std::time::Duration,
    /// Longest delay.
    pub max_delay: std::time::Duration,
    /// Failures in a row that lock the email.
    pub lock_after: i32,
    /// How long a lock lasts.
    pub lock_for: Duration,
}

impl Throttle {
    /// How long to hold back the answer to failure number `failures`.
    pub fn delay(&self, failures: i32) -> std::time::Duration {
        let over = u32::try_from(failures - self.free_failures).unwrap_or(0);
        self.step.saturating_mul(over).min(self.max_delay)
    }
}

/// What an attempt to sign in may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password; this is attempt number `n` in a row.
    Allowed(i32),
    /// Refused until then.
    Locked(DateTime<Utc>),
}

/// Counts a sign-in attempt for `email` *before* its password is checked,
/// so parallel guesses cannot outrun the lock: at most `lock_after`
/// attempts in a row get a password check, then the email is locked. A
/// success ([`succeed`]) forgets the count; an attempt long after the last
/// one, or after a lock ran out, starts it again.
pub async fn begin_attempt(
    conn: &mut AsyncPgConnection,
    email: &str,
    throttle: &Throttle,
) -> QueryResult<Attempt> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Int4)]
        failures: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        locked_until: Option<DateTime<Utc>>,
    }
    let email = email.to_lowercase();
    let row: Row = diesel::sql_query(
        "INSERT INTO login_attempts AS a (email, failures, last_failure_at) VALUES ($1, 1, now()) \
         ON CONFLICT (email) DO UPDATE SET \
           failures = CASE WHEN a.locked_until > now() THEN a.failures \
                           WHEN a.locked_until IS NOT NULL \
                             OR a.last_failure_at < now() - make_interval(secs => $2) THEN 1 \
                           ELSE a.failures + 1 END, \
           last_failure_at = CASE WHEN a.locked_until > now() THEN a.last_failure_at ELSE now() END, \
           locked_until = CASE WHEN a.locked_until > now() THEN a.locked_until ELSE NULL END \
         RETURNING failures, locked_until",
    )
    .bind::<diesel::sql_types::Text, _>(&email)
    .bind::<diesel::sql_types::Double, _>(throttle.lock_for.num_seconds() as f64)
    .get_result(conn)
    .await?;
    if let Some(until) = row.locked_until {
        return Ok(Attempt::Locked(until));
    }
    if row.failures > throttle.lock_after {
        return lock(conn, &email, throttle).await.map(Attempt::Locked);
    }
    Ok(Attempt::Allowed(row.failures))
}

/// Locks `email` for the throttle's lock time (after the last allowed
/// attempt failed).
pub async fn lock(
    conn: &mut AsyncPgConnection,
    email: &str,
    throttle: &Throttle,
) -> QueryResult<DateTime<Utc>> {
    let until = Utc::now() + throttle.lock_for;
    diesel::update(login_attempts::table.find(email.to_lowercase()))
        .set(login_attempts::locked_until.eq(until))
        .execute(conn)
        .await?;
    Ok(until)
}

/// After the right password: refuses if the email was locked meanwhile (by
/// parallel failures), else forgets its attempts.
pub async fn succeed(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<DateTime<Utc>>> {
    let email = email.to_lowercase();
    let locked: Option<Option<DateTime<Utc>>> = login_attempts::table
        .find(&email)
        .select(login_attempts::locked_until)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    if let Some(until) = locked.flatten().filter(|t| *t > Utc::now()) {
        return Ok(Some(until));
    }
    diesel::delete(login_attempts::table.find(&email))
        .execute(conn)
        .await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_delays_grow_then_cap() {
        let t = Throttle {
            free_failures: 3,
            step: std::time::Duration::from_millis(200),
            max_delay: std::time::Duration::from_secs(1),
            lock_after: 10,
            lock_for: Duration::minutes(15),
        };
        assert_eq!(t.delay(1), std::time::Duration::ZERO);
        assert_eq!(t.delay(3), std::time::Duration::ZERO);
        assert_eq!(t.delay(4), std::time::Duration::from_millis(200));
        assert_eq!(t.delay(9), std::time::Duration::from_secs(1));
    }
}
