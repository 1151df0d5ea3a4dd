//! API keys: made by a user, acting as that user within chosen permissions.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::api_keys::{self, ApiKey};
use crate::domain::audit;
use crate::domain::permissions::{self, PermissionSet};
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::pagination::parse_id;
use crate::in_scope;

#[Object]
impl ApiKey {
    /// Key id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// What the key is for.
    async fn name(&self) -> &str {
        &self.name
    }
    /// The key's visible start, `sk.<tenant>.<prefix>`, to recognise it.
    async fn prefix(&self, ctx: &Context<'_>) -> Result<String> {
        let (scope, _) = ctx.req()?.access().await?;
        Ok(format!("sk.{}.{}", scope.tenant.slug, self.prefix))
    }
    /// The user it acts as.
    async fn user_id(&self) -> ID {
        ID(self.user_id.to_string())
    }
    /// What it was given (it never gets more than its owner has).
    async fn permissions(&self) -> &[String] {
        &self.permissions
    }
    /// When it was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When it stops working; null: never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
    /// Last use (to the minute).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.last_used_at
    }
    /// When it was revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.revoked_at
    }
}

/// A key to make.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// What the key is for.
    pub name: String,
    /// What it may do: permissions you hold yourself.
    pub permissions: Vec<String>,
    /// When it stops working; omit for never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The new key.
#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    /// The key's record.
    pub api_key: ApiKey,
    /// The whole key, shown this once: send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// A key to revoke.
#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    /// The key.
    pub id: ID,
}

/// The revoked key.
#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    /// The key as it is now.
    pub api_key: ApiKey,
}

/// API keys.
#[derive(Default)]
pub struct ApiKeysQuery;

#[Object]
impl ApiKeysQuery {
    /// Your API keys, newest first; everyone's with `all: true` and
    /// `apikeys:manage`.
    async fn api_keys(&self, ctx: &Context<'_>, all: Option<bool>) -> Result<Vec<ApiKey>> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let only = if all.unwrap_or(false) {
            access.require("apikeys:manage")?;
            None
        } else {
            Some(access.user()?)
        };
        Ok(in_scope!(scope.work, |conn| Ok(api_keys::list(
            conn, only
        )
        .await?))?)
    }
}

/// Making and revoking API keys.
#[derive(Default)]
pub struct ApiKeysMutation;

#[Object]
impl ApiKeysMutation {
    /// Makes an API key acting as you, with permissions you hold. Needs
    /// `apikeys:create` and a signed-in user (a key cannot make keys). The
    /// secret is in the answer only.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<CreateApiKeyPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.require("apikeys:create").await?;
        // A key cannot breed keys: a leaked or expiring key could otherwise
        // outlive itself.
        let user = access.signed_in_user()?;
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.contains('\0') {
            return Err(AppError::bad_input("name", "a key name is 1 to 100 characters").into());
        }
        if input.permissions.is_empty() {
            return Err(
                AppError::bad_input("permissions", "give the key at least one permission").into(),
            );
        }
        let wanted: PermissionSet = input
            .permissions
            .iter()
            .map(|p| permissions::parse(p, "permissions").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        // Keys follow their owner's current permissions on every request,
        // so what the owner holds now (temporary roles included) may be given.
        if !access.permissions.covers(&wanted) {
            return Err(AppError::Forbidden(
                "a key cannot hold permissions you do not have".into(),
            )
            .into());
        }
        if input.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(AppError::bad_input("expiresAt", "expiresAt must be in the future").into());
        }
        let slug = scope.tenant.slug.clone();
        let (api_key, secret) = in_scope!(scope.work, |conn| {
            let made =
                api_keys::create(conn, &slug, user, &name, &wanted.to_vec(), input.expires_at)
                    .await?;
            audit::record(
                conn,
                access.who(),
                "apikey.created",
                Some(("api_key", made.0.id)),
                &name,
            )
            .await?;
            Ok(made)
        })?;
        Ok(CreateApiKeyPayload { api_key, secret })
    }

    /// Revokes a key: your own, or anyone's with `apikeys:manage`. It stops working on the next request.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiKeyInput,
    ) -> Result<RevokeApiKeyPayload> {
        let req = ctx.req()?;
        let (scope, access) = req.access().await?;
        let id = parse_id(&input.id, "id")?;
        let api_key = in_scope!(scope.work, |conn| {
            let key = api_keys::find(conn, id).await?;
            let mine = key
                .as_ref()
                .is_some_and(|k| access.user().ok() == Some(k.user_id));
            // Revoking one's own key is always allowed (even after losing
            // `apikeys:create`); anyone else's needs `apikeys:manage`.
            let allowed = if mine {
                Ok(())
            } else {
                access.require("apikeys:manage")
            };
            if key.is_none() || allowed.is_err() {
                allowed?;
                return Err(AppError::not_found(Some("id"), "no such API key"));
            }
            let key = api_keys::revoke(conn, id)
                .await?
                .ok_or_else(|| AppError::not_found(Some("id"), "no such API key"))?;
            audit::record(
                conn,
                access.who(),
                "apikey.revoked",
                Some(("api_key", id)),
                &key.name,
            )
            .await?;
            Ok(key)
        })?;
        Ok(RevokeApiKeyPayload { api_key })
    }
}
