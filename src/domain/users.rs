//! A tenant's users. Every function runs on a tenant-bound connection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::tenant::users;
use crate::error::{AppError, AppResult};

/// Roles a user can hold (issue-level access control comes later).
pub mod role {
    /// Created with the tenant.
    pub const OWNER: &str = "owner";
    /// Everyone else.
    pub const MEMBER: &str = "member";
}

/// A user as clients see it (no password hash).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// A new user, password already hashed.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
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

/// A user and their password hash, by email (case-insensitive).
pub async fn find_for_login(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(Uuid, String)>> {
    diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
    users::table
        .filter(lower(users::email).eq(email.to_lowercase()))
        .select((users::id, users::password_hash))
        .first(conn)
        .await
        .optional()
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
