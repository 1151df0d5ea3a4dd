//! One error type for everything a resolver can return, and its mapping to a
//! GraphQL error with a stable `extensions.code`.
//!
//! Internal errors are opaque to the client: the detail goes to the log and
//! the client sees only "internal server error".

use async_graphql::ErrorExtensions;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// An error a client can see, or an opaque internal one.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No credentials, or credentials that do not check out.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request names no tenant, or one that does not exist.
    #[error("{0}")]
    TenantNotFound(String),
    /// The tenant exists but is suspended.
    #[error("tenant '{0}' is suspended")]
    TenantSuspended(String),
    /// The tenant's schema is behind this server's template: it is served
    /// again once `strata tenants migrate` has brought it up.
    #[error("{0}")]
    TenantMigrationPending(String),
    /// Two sources in the request name different tenants.
    #[error("{0}")]
    TenantMismatch(String),
    /// Invalid input; `field` names the input field when there is one.
    #[error("{message}")]
    BadUserInput {
        message: String,
        field: Option<&'static str>,
    },
    /// The thing asked for does not exist (in this tenant).
    #[error("{message}")]
    NotFound {
        message: String,
        field: Option<&'static str>,
    },
    /// A uniqueness rule would be broken.
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<&'static str>,
    },
    /// The tenant's plan does not allow this.
    #[error("{message}")]
    PlanLimitExceeded {
        message: String,
        limit: &'static str,
    },
    /// Too many attempts; try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: i64,
    },
    /// Anything else: logged, never shown.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::TenantNotFound(_) => "TENANT_NOT_FOUND",
            Self::TenantSuspended(_) => "TENANT_SUSPENDED",
            Self::TenantMismatch(_) => "TENANT_MISMATCH",
            Self::TenantMigrationPending(_) => "TENANT_MIGRATION_PENDING",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Conflict { .. } => "CONFLICT",
            Self::PlanLimitExceeded { .. } => "PLAN_LIMIT_EXCEEDED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// A `BAD_USER_INPUT` error about one input field.
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            message: message.into(),
            field: Some(field),
        }
    }

    /// A `NOT_FOUND` error, optionally about one input field.
    pub fn not_found(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            field,
        }
    }

    /// A `CONFLICT` error about one input field.
    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            field: Some(field),
        }
    }

    /// An opaque internal error.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }
}

impl From<DieselError> for AppError {
    fn from(err: DieselError) -> Self {
        match &err {
            DieselError::NotFound => Self::not_found(None, "not found"),
            DieselError::DatabaseError(kind, info) => {
                // Constraint names are part of our schema; messages are not.
                match (kind, info.constraint_name()) {
                    (DatabaseErrorKind::UniqueViolation, Some("tenants_slug_key"))
                    | (DatabaseErrorKind::UniqueViolation, Some("tenants_schema_name_key")) => {
                        Self::conflict("slug", "a tenant with this slug already exists")
                    }
                    (DatabaseErrorKind::UniqueViolation, Some("users_email_key")) => {
                        Self::conflict("email", "a user with this email already exists")
                    }
                    (DatabaseErrorKind::UniqueViolation, Some("tenant_domains_domain_key")) => {
                        Self::conflict("domain", "this domain is already registered")
                    }
                    (DatabaseErrorKind::ForeignKeyViolation, Some("tasks_project_id_fkey")) => {
                        Self::not_found(Some("projectId"), "project not found")
                    }
                    (DatabaseErrorKind::ForeignKeyViolation, Some("tasks_assignee_id_fkey")) => {
                        Self::not_found(Some("assigneeId"), "assignee not found")
                    }
                    (DatabaseErrorKind::ForeignKeyViolation, Some("tenants_plan_code_fkey")) => {
                        Self::bad_input("plan", "no such plan")
                    }
                    (DatabaseErrorKind::UniqueViolation, Some("roles_key_key")) => {
                        Self::conflict("key", "a role with this key already exists")
                    }
                    (DatabaseErrorKind::UniqueViolation, Some("teams_name_key")) => {
                        Self::conflict("name", "a sibling team already has this name")
                    }
                    (DatabaseErrorKind::UniqueViolation, Some("invitations_open_email_key")) => {
                        Self::conflict(
                            "email",
                            "an invitation to this email is already open; revoke it first",
                        )
                    }
                    (
                        DatabaseErrorKind::ForeignKeyViolation,
                        Some("roles_parent_id_fkey" | "teams_parent_id_fkey"),
                    ) => Self::not_found(Some("parentId"), "parent not found"),
                    (
                        DatabaseErrorKind::ForeignKeyViolation,
                        Some("role_assignments_user_id_fkey" | "team_members_user_id_fkey"),
                    ) => Self::not_found(Some("userId"), "user not found"),
                    (
                        DatabaseErrorKind::ForeignKeyViolation,
                        Some("role_assignments_role_id_fkey" | "invitations_role_id_fkey"),
                    ) => Self::not_found(Some("roleId"), "role not found"),
                    (DatabaseErrorKind::ForeignKeyViolation, Some("team_members_team_id_fkey")) => {
                        Self::not_found(Some("teamId"), "team not found")
                    }
                    (DatabaseErrorKind::SerializationFailure, _) => Self::Conflict {
                        message: "the data changed at the same moment; try again".to_owned(),
                        field: None,
                    },
                    _ => Self::internal(err),
                }
            }
            _ => Self::internal(err),
        }
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for AppError {
    fn from(err: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        Self::internal(anyhow::anyhow!("database pool: {err}"))
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        if let AppError::Internal(source) = &err {
            tracing::error!(error = ?source, "internal error");
        }
        let code = err.code();
        async_graphql::Error::new(err.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            match &err {
                AppError::BadUserInput {
                    field: Some(field), ..
                }
                | AppError::NotFound {
                    field: Some(field), ..
                }
                | AppError::Conflict {
                    field: Some(field), ..
                } => ext.set("field", *field),
                AppError::PlanLimitExceeded { limit, .. } => ext.set("limit", *limit),
                AppError::RateLimited {
                    retry_after_secs, ..
                } => ext.set("retryAfterSeconds", *retry_after_secs),
                _ => {}
            }
        })
    }
}

/// Resolver result.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::DatabaseErrorInformation;

    struct Info(Option<&'static str>);
    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            "duplicate key value violates unique constraint (secret SQL detail)"
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.0
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db(kind: DatabaseErrorKind, constraint: Option<&'static str>) -> AppError {
        DieselError::DatabaseError(kind, Box::new(Info(constraint))).into()
    }

    fn gql(err: AppError) -> (String, String, Option<String>) {
        let e: async_graphql::Error = err.into();
        let ext = e.extensions.expect("extensions");
        let code = ext.get("code").expect("code").to_string();
        let field = ext.get("field").map(|f| f.to_string());
        (e.message, code, field)
    }

    #[test]
    fn taken_slug_is_conflict_on_slug() {
        let (msg, code, field) = gql(db(
            DatabaseErrorKind::UniqueViolation,
            Some("tenants_slug_key"),
        ));
        assert_eq!(code, "\"CONFLICT\"");
        assert_eq!(field.as_deref(), Some("\"slug\""));
        assert!(!msg.contains("SQL"));
    }

    #[test]
    fn taken_email_is_conflict_on_email() {
        let (_, code, field) = gql(db(
            DatabaseErrorKind::UniqueViolation,
            Some("users_email_key"),
        ));
        assert_eq!(code, "\"CONFLICT\"");
        assert_eq!(field.as_deref(), Some("\"email\""));
    }

    #[test]
    fn missing_project_is_not_found_on_project_id() {
        let (_, code, field) = gql(db(
            DatabaseErrorKind::ForeignKeyViolation,
            Some("tasks_project_id_fkey"),
        ));
        assert_eq!(code, "\"NOT_FOUND\"");
        assert_eq!(field.as_deref(), Some("\"projectId\""));
    }

    #[test]
    fn unknown_constraint_is_opaque_internal_error() {
        let (msg, code, _) = gql(db(DatabaseErrorKind::UniqueViolation, Some("other_key")));
        assert_eq!(code, "\"INTERNAL_SERVER_ERROR\"");
        assert_eq!(msg, "internal server error");
    }

    #[test]
    fn diesel_not_found_is_not_found() {
        let (_, code, _) = gql(DieselError::NotFound.into());
        assert_eq!(code, "\"NOT_FOUND\"");
    }

    #[test]
    fn every_variant_has_its_code() {
        let cases = [
            (AppError::Unauthenticated("x".into()), "UNAUTHENTICATED"),
            (AppError::Forbidden("x".into()), "FORBIDDEN"),
            (
                AppError::TenantMigrationPending("x".into()),
                "TENANT_MIGRATION_PENDING",
            ),
            (
                AppError::RateLimited {
                    message: "x".into(),
                    retry_after_secs: 1,
                },
                "RATE_LIMITED",
            ),
            (AppError::TenantNotFound("x".into()), "TENANT_NOT_FOUND"),
            (AppError::TenantSuspended("x".into()), "TENANT_SUSPENDED"),
            (AppError::TenantMismatch("x".into()), "TENANT_MISMATCH"),
            (AppError::bad_input("f", "x"), "BAD_USER_INPUT"),
            (
                AppError::PlanLimitExceeded {
                    message: "x".into(),
                    limit: "projects",
                },
                "PLAN_LIMIT_EXCEEDED",
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
        }
    }
}
