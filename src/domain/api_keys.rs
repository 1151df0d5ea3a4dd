//! API keys. Every function runs on a tenant-bound connection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::auth::{self, ApiKeyToken};
use crate::db::schema::tenant::api_keys;

/// An API key as lists show it (never its secret).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Makes a key for `user`; returns it and the whole key (shown once).
pub async fn create(
    conn: &mut AsyncPgConnection,
    slug: &str,
    user: Uuid,
    name: &str,
    permissions: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> QueryResult<(ApiKey, String)> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let prefix: String = (0..12)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    let token = ApiKeyToken {
        slug: slug.to_owned(),
        prefix,
        secret: auth::new_secret(),
    };
    let key = diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::now_v7()),
            api_keys::user_id.eq(user),
            api_keys::name.eq(name),
            api_keys::prefix.eq(&token.prefix),
            api_keys::secret_hash.eq(auth::hash_secret(&token.secret)),
            api_keys::permissions.eq(permissions),
            api_keys::expires_at.eq(expires_at),
        ))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await?;
    Ok((key, token.render()))
}

/// Keys, newest first: one user's, or everyone's.
pub async fn list(conn: &mut AsyncPgConnection, user: Option<Uuid>) -> QueryResult<Vec<ApiKey>> {
    let mut query = api_keys::table
        .select(ApiKey::as_select())
        .order(api_keys::id.desc())
        .limit(500)
        .into_boxed();
    if let Some(user) = user {
        query = query.filter(api_keys::user_id.eq(user));
    }
    query.load(conn).await
}

/// The key with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .find(id)
        .select(ApiKey::as_select())
        .first(conn)
        .await
        .optional()
}

/// Revokes a key (it stops working on the next request).
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ApiKey>> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::revoked_at.eq(Some(Utc::now())))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Notes that a key was used; written at most once a minute per key.
///
/// A query's credential check runs this inside the request's transaction,
/// which then holds the row lock until the request ends: a request that
/// finds the row locked (another request with the same key is noting it
/// right now) skips the write instead of waiting for that request.
pub async fn touch(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE api_keys SET last_used_at = now() WHERE id = ( \
           SELECT id FROM api_keys WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') \
           FOR UPDATE SKIP LOCKED)",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .execute(conn)
    .await
    .map(drop)
}
