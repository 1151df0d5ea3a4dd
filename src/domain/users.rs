//! A tenant's users. Every function runs on a tenant-bound connection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::db::schema::tenant::users;
use crate::error::{AppError, AppResult};

/// A user as clients see it (no password hash).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while the user is disabled: they cannot sign in and their
    /// sessions and API keys stop working.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A new user, password already hashed.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
}

/// Normalises and checks an email address: trimmed, one `@` with text on
/// both sides, a dot in the domain, at most 254 characters.
pub fn parse_email(raw: &str, field: &'static str) -> AppResult<String> {
    let email = raw.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email.to_owned())
    } else {
        Err(AppError::bad_input(field, "not a valid email address"))
    }
}

/// Checks a display name: 1 to 200 characters after trimming.
pub fn parse_display_name(raw: &str, field: &'static str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(AppError::bad_input(
            field,
            "display name must be 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Inserts a user.
pub async fn insert(conn: &mut AsyncPgConnection, new: NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(&new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// The user with `id`.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Users by id, for the assignee loader.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<User>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(User::as_select())
        .load(conn)
        .await
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A user's id, password hash and whether they are disabled, by email
/// (case-insensitive).
pub async fn find_for_login(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(Uuid, String, bool)>> {
    users::table
        .filter(lower(users::email).eq(email.to_lowercase()))
        .select((
            users::id,
            users::password_hash,
            users::disabled_at.is_not_null(),
        ))
        .first(conn)
        .await
        .optional()
}

/// A user's password hash.
pub async fn password_hash(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<String>> {
    users::table
        .find(id)
        .select(users::password_hash)
        .first(conn)
        .await
        .optional()
}

/// A page of users in id (creation) order after `after`, disabled ones
/// included when asked; one more row than `limit` tells if more follow.
pub async fn page(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
    include_disabled: bool,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .select(User::as_select())
        .order(users::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    if !include_disabled {
        query = query.filter(users::disabled_at.is_null());
    }
    query.load(conn).await
}

/// How many users there are (enabled only unless asked).
pub async fn count(conn: &mut AsyncPgConnection, include_disabled: bool) -> QueryResult<i64> {
    let mut query = users::table.count().into_boxed();
    if !include_disabled {
        query = query.filter(users::disabled_at.is_null());
    }
    query.get_result(conn).await
}

/// Changes a user's email and/or display name.
pub async fn update_profile(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: Option<&str>,
    display_name: Option<&str>,
) -> QueryResult<Option<User>> {
    #[derive(AsChangeset)]
    #[diesel(table_name = users)]
    struct Changes<'a> {
        email: Option<&'a str>,
        display_name: Option<&'a str>,
        updated_at: DateTime<Utc>,
    }
    diesel::update(users::table.find(id))
        .set(Changes {
            email,
            display_name,
            updated_at: Utc::now(),
        })
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Disables or enables a user.
pub async fn set_disabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    disabled: bool,
) -> QueryResult<Option<User>> {
    let now = Utc::now();
    diesel::update(users::table.find(id))
        .set((
            users::disabled_at.eq(disabled.then_some(now)),
            users::updated_at.eq(now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Replaces a password hash if it is still `old`; false if it changed meanwhile.
pub async fn replace_password(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    old: &str,
    new: &str,
) -> QueryResult<bool> {
    diesel::update(users::table.find(id).filter(users::password_hash.eq(old)))
        .set((
            users::password_hash.eq(new),
            users::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// Enforces the plan's seat limit for one more enabled user (open
/// invitations count as taken seats when `count_open_invitations`). Locks the users
/// table against concurrent additions until the transaction ends.
pub async fn check_seats(
    conn: &mut AsyncPgConnection,
    max_seats: Option<i32>,
    count_open_invitations: bool,
) -> AppResult<()> {
    let Some(max) = max_seats else {
        return Ok(());
    };
    conn.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let mut used = count(conn, false).await?;
    if count_open_invitations {
        use crate::db::schema::tenant::invitations as i;
        used += i::table
            .filter(i::accepted_at.is_null())
            .filter(i::revoked_at.is_null())
            .filter(i::expires_at.gt(Utc::now()))
            .count()
            .get_result::<i64>(conn)
            .await?;
    }
    if used >= i64::from(max) {
        return Err(AppError::PlanLimitExceeded {
            message: if count_open_invitations {
                format!(
                    "the plan allows {max} seat(s), all taken by users and open invitations; disable a user, revoke an invitation or change plan"
                )
            } else {
                format!("the plan allows {max} seat(s), all taken; disable a user or change plan")
            },
            limit: "seats",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(parse_email(" a@b.co ", "email").unwrap(), "a@b.co");
        for bad in ["", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@b.", "a@@b.co"] {
            assert!(parse_email(bad, "email").is_err(), "{bad:?}");
        }
    }
}
