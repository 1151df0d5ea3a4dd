//! `TenantSlug`: the only way a tenant's name reaches SQL or DDL.

use std::fmt;

/// A validated tenant slug: a lowercase letter, then lowercase letters,
/// digits or `_`, 2 to 40 characters in all, and not a reserved name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

/// Why a string is not a slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("slug must be 2 to 40 characters long")]
    Length,
    #[error("slug must start with a lowercase letter")]
    FirstChar,
    #[error("slug may contain only lowercase letters, digits and '_'")]
    Chars,
    #[error("slug '{0}' is reserved")]
    Reserved(String),
}

const RESERVED: &[&str] = &["management", "public", "template", "information_schema"];

impl TenantSlug {
    /// Checks `raw` against the slug rules.
    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        if !(2..=40).contains(&raw.len()) {
            return Err(SlugError::Length);
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(SlugError::FirstChar);
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(SlugError::Chars);
        }
        if RESERVED.contains(&raw) || raw.starts_with("pg_") {
            return Err(SlugError::Reserved(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant's schema name, `tenant_<slug>` (unquoted).
    pub fn schema_name(&self) -> String {
        format!("tenant_{}", self.0)
    }

    /// The schema name as a quoted SQL identifier, safe to splice into DDL.
    pub fn quoted_schema(&self) -> String {
        // The slug's alphabet has no quote; quoting keeps it an identifier anyway.
        format!("\"tenant_{}\"", self.0)
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_slugs() {
        for ok in ["ab", "acme", "a1", "big_co_2", &"a".repeat(40)] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_slugs() {
        let cases = [
            ("a", SlugError::Length),
            (&"a".repeat(41), SlugError::Length),
            ("1abc", SlugError::FirstChar),
            ("_abc", SlugError::FirstChar),
            ("Acme", SlugError::FirstChar),
            ("acMe", SlugError::Chars),
            ("ac-me", SlugError::Chars),
            ("a\"; drop schema management cascade; --", SlugError::Chars),
            ("acme ", SlugError::Chars),
            ("café", SlugError::Chars),
        ];
        for (raw, err) in cases {
            assert_eq!(TenantSlug::parse(raw), Err(err), "{raw:?}");
        }
    }

    #[test]
    fn rejects_reserved_names() {
        for raw in ["management", "public", "template", "pg_catalog", "pg_x"] {
            assert!(
                matches!(TenantSlug::parse(raw), Err(SlugError::Reserved(_))),
                "{raw}"
            );
        }
    }

    #[test]
    fn schema_name_is_prefixed_and_quoted() {
        let slug = TenantSlug::parse("acme").unwrap();
        assert_eq!(slug.schema_name(), "tenant_acme");
        assert_eq!(slug.quoted_schema(), "\"tenant_acme\"");
    }
}
