//! Credentials: password hashing (argon2id), tenant users' signed tokens,
//! and who a request is from.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (hashing cost grows with length).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks a new password against the rules.
pub fn check_new_password(password: &str, field: &'static str) -> AppResult<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(AppError::bad_input(
            field,
            format!("password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AppError::bad_input(
            field,
            format!("password must be at most {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id, off the async threads.
pub async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)
}

/// Checks a password against a stored hash, off the async threads. With no
/// hash (unknown user) it spends the same work on a dummy hash, so the answer
/// takes as long either way.
pub async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3p5ZxT3nCmJ1cAk9Yt2c5n1i2Hcw2jz0cVmO0ZlHq7w";
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY.to_owned());
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok::<_, anyhow::Error>(known && ok)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)
}

/// A new random secret for an opaque token (refresh token, API key,
/// invitation): 32 bytes, URL-safe base64.
pub fn new_secret() -> String {
    crate::config::random_secret()
}

/// What is stored of an opaque token's secret: its SHA-256. The secrets are
/// 256 random bits, so a fast hash is enough (unlike passwords).
pub fn hash_secret(secret: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn secret_matches(secret: &str, stored: &[u8]) -> bool {
    bool::from(hash_secret(secret).as_slice().ct_eq(stored))
}

/// Splits an `<id>.<secret>` token (refresh tokens, invitations).
pub fn split_token(raw: &str) -> Option<(Uuid, &str)> {
    let (id, secret) = raw.trim().split_once('.')?;
    let id = Uuid::parse_str(id).ok()?;
    (!secret.is_empty()).then_some((id, secret))
}

/// An API key as presented: `sk.<tenant slug>.<prefix>.<secret>`. The slug
/// makes the key name its tenant (like a user token's claim); the prefix is
/// what lists show; only the secret's hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyToken {
    /// The tenant the key was made in.
    pub slug: String,
    /// The key's visible, unique prefix.
    pub prefix: String,
    /// The secret part.
    pub secret: String,
}

impl ApiKeyToken {
    /// Marks a bearer credential as an API key.
    pub const SCHEME: &'static str = "sk";

    /// Reads a bearer credential that looks like an API key.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split('.');
        let (scheme, slug, prefix, secret) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let ok = scheme == Self::SCHEME
            && parts.next().is_none()
            && !slug.is_empty()
            && prefix.len() == 12
            && prefix.chars().all(|c| c.is_ascii_alphanumeric())
            && !secret.is_empty();
        ok.then(|| Self {
            slug: slug.to_owned(),
            prefix: prefix.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The whole key, as shown once to its creator.
    pub fn render(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            Self::SCHEME,
            self.slug,
            self.prefix,
            self.secret
        )
    }
}

/// What a tenant user's access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The tenant's id: a token is refused for any other tenant.
    pub tid: Uuid,
    /// The tenant's slug when the token was issued.
    pub ten: String,
    /// The session the token belongs to: revoking it ends the token at once.
    pub sid: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// Signs and checks tenant users' tokens (HS256).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from the token secret.
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    /// An access token for `user` in tenant (`tenant_id`, `slug`), part of
    /// session `sid`, and when it expires.
    pub fn issue(
        &self,
        user: Uuid,
        tenant_id: Uuid,
        slug: &str,
        sid: Uuid,
    ) -> AppResult<(String, chrono::DateTime<chrono::Utc>)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            tid: tenant_id,
            ten: slug.to_owned(),
            sid,
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AppError::internal)?;
        let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        Ok((token, expires))
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> AppResult<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AppError::Unauthenticated("the token has expired; sign in again".into())
                }
                _ => AppError::Unauthenticated("invalid token".into()),
            })
    }
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// The platform admin token.
    Admin,
    /// A tenant user's access token (its session is checked on first use).
    User(Claims),
    /// A tenant API key (checked against the tenant's keys on first use).
    ApiKey(ApiKeyToken),
}

/// Reads `Authorization: Bearer ...`. A token that is present but not valid
/// is an error (kept until an operation needs credentials).
pub fn principal_from_headers(
    headers: &HeaderMap,
    admin_token: &str,
    keys: &TokenKeys,
) -> AppResult<Principal> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(Principal::Anonymous);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthenticated("malformed Authorization header".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            AppError::Unauthenticated("expected 'Authorization: Bearer <token>'".into())
        })?;
    if bool::from(token.as_bytes().ct_eq(admin_token.as_bytes())) {
        return Ok(Principal::Admin);
    }
    if token.starts_with("sk.") {
        return ApiKeyToken::parse(token)
            .map(Principal::ApiKey)
            .ok_or_else(|| AppError::Unauthenticated("malformed API key".into()));
    }
    keys.verify(token).map(Principal::User)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_names_user_and_tenant() {
        let keys = TokenKeys::new("secret", 60);
        let (user, tenant) = (Uuid::now_v7(), Uuid::now_v7());
        let sid = Uuid::now_v7();
        let (token, _) = keys.issue(user, tenant, "acme", sid).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.tid, claims.ten.as_str(), claims.sid),
            (user, tenant, "acme", sid)
        );
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let (token, _) = TokenKeys::new("one", 60)
            .issue(Uuid::now_v7(), Uuid::now_v7(), "a", Uuid::now_v7())
            .unwrap();
        let err = TokenKeys::new("two", 60).verify(&token).unwrap_err();
        assert_eq!(err.code(), "UNAUTHENTICATED");
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = TokenKeys::new("s", 0);
        let mut claims = keys
            .verify(
                &keys
                    .issue(Uuid::nil(), Uuid::nil(), "a", Uuid::nil())
                    .unwrap()
                    .0,
            )
            .unwrap();
        claims.exp -= 3600;
        let token = jsonwebtoken::encode(&Header::default(), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token).unwrap_err().code(), "UNAUTHENTICATED");
    }

    #[test]
    fn admin_token_is_recognised_and_garbage_is_not() {
        let keys = TokenKeys::new("s", 60);
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer adm".parse().unwrap());
        assert_eq!(
            principal_from_headers(&h, "adm", &keys).unwrap(),
            Principal::Admin
        );
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(principal_from_headers(&h, "adm", &keys).is_err());
        assert_eq!(
            principal_from_headers(&HeaderMap::new(), "adm", &keys).unwrap(),
            Principal::Anonymous
        );
    }

    #[test]
    fn api_keys_round_trip_and_garbage_is_refused() {
        let key = ApiKeyToken {
            slug: "acme".into(),
            prefix: "abcdef123456".into(),
            secret: new_secret(),
        };
        assert_eq!(ApiKeyToken::parse(&key.render()), Some(key));
        for bad in [
            "sk.acme",
            "sk.acme.short.secret",
            "xx.acme.abcdef123456.s",
            "sk..abcdef123456.s",
            "sk.a.abcdef123456.s.extra",
        ] {
            assert_eq!(ApiKeyToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn secrets_match_only_their_hash() {
        let secret = new_secret();
        let stored = hash_secret(&secret);
        assert!(secret_matches(&secret, &stored));
        assert!(!secret_matches(&new_secret(), &stored));
        let id = Uuid::now_v7();
        assert_eq!(
            split_token(&format!("{id}.{secret}")),
            Some((id, secret.as_str()))
        );
        assert_eq!(split_token("nope"), None);
    }

    #[tokio::test]
    async fn password_hash_verifies_only_the_right_password() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("x".into(), None).await.unwrap());
    }
}
