//! Relay-style pagination helpers: page sizes and opaque cursors.

use std::fmt::Display;
use std::str::FromStr;

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{ObjectType, OutputType};
use base64::Engine as _;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// Largest `first` accepted.
pub const MAX_PAGE_SIZE: i64 = 100;

/// Checks `first`: 0 to 100, default 20.
pub fn page_size(first: Option<i32>) -> AppResult<i64> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => Ok(i64::from(n)),
        Some(_) => Err(AppError::bad_input(
            "first",
            format!("first must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// An opaque cursor for a position key.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

/// The position key inside a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> AppResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("v1:").map(str::to_owned))
        .ok_or_else(|| AppError::bad_input("after", "not a cursor from this API"))
}

/// The row id inside an `after` cursor, if one was given.
pub fn after_id(after: Option<&str>) -> AppResult<Option<Uuid>> {
    after
        .map(|c| {
            decode_cursor(c)?
                .parse::<Uuid>()
                .map_err(|_| AppError::bad_input("after", "not a cursor from this API"))
        })
        .transpose()
}

/// A row's position key, encoded by [`encode_cursor`] only when a client
/// asks for the cursor: most pages (a dashboard's) never do, and encoding
/// every row's was a few allocations per row for nothing.
pub struct Cursor<K>(pub K);

impl<K: Display + FromStr> CursorType for Cursor<K> {
    type Error = AppError;

    fn decode_cursor(cursor: &str) -> AppResult<Self> {
        decode_cursor(cursor)?
            .parse()
            .map(Cursor)
            .map_err(|_| AppError::bad_input("after", "not a cursor from this API"))
    }

    fn encode_cursor(&self) -> String {
        encode_cursor(&self.0.to_string())
    }
}

/// Builds a connection from one page of rows, each row's cursor made from
/// its position `key`.
pub fn connection<K, N, F>(
    rows: Vec<N>,
    has_next: bool,
    has_previous: bool,
    key: impl Fn(&N) -> K,
    fields: F,
) -> Connection<Cursor<K>, N, F>
where
    K: Display + FromStr + Send + Sync,
    N: OutputType,
    F: ObjectType,
{
    let mut conn = Connection::with_additional_fields(has_previous, has_next, fields);
    conn.edges
        .extend(rows.into_iter().map(|n| Edge::new(Cursor(key(&n)), n)));
    conn
}

/// Parses a GraphQL `ID` holding a row id.
pub fn parse_id(id: &async_graphql::ID, field: &'static str) -> AppResult<Uuid> {
    id.parse::<Uuid>()
        .map_err(|_| AppError::bad_input(field, "not an id from this API"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let id = Uuid::now_v7();
        let c = encode_cursor(&id.to_string());
        assert_eq!(after_id(Some(&c)).unwrap(), Some(id));
    }

    #[test]
    fn lazy_cursor_is_the_same_cursor() {
        let id = Uuid::now_v7();
        let c = Cursor(id).encode_cursor();
        assert_eq!(c, encode_cursor(&id.to_string()));
        assert_eq!(Cursor::<Uuid>::decode_cursor(&c).unwrap().0, id);
        assert!(Cursor::<Uuid>::decode_cursor("xyz").is_err());
    }

    #[test]
    fn garbage_cursor_is_bad_input() {
        for bad in ["", "xyz", "djE6bm90LWEtdXVpZA"] {
            assert_eq!(after_id(Some(bad)).unwrap_err().code(), "BAD_USER_INPUT");
        }
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(-1)).is_err());
    }
}
