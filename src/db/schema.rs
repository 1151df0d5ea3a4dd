//! Diesel table definitions. Management tables are schema-qualified; tenant
//! tables are not, so they resolve through the search_path that
//! [`crate::tenancy::conn`] binds to one tenant for one transaction.

/// The platform's own tables.
pub mod management {
    diesel::table! {
        management.plans (code) {
            code -> Text,
            name -> Text,
            price_cents -> Int4,
            max_seats -> Nullable<Int4>,
            max_projects -> Nullable<Int4>,
            api_calls_per_month -> Int8,
            storage_gb -> Int4,
            hipaa -> Bool,
            sort_order -> Int4,
        }
    }

    diesel::table! {
        management.tenants (id) {
            id -> Uuid,
            slug -> Text,
            name -> Text,
            plan_code -> Text,
            status -> Text,
            schema_name -> Text,
            template_version -> Int4,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            db_role -> Nullable<Text>,
            deleted_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        management.tenant_events (id) {
            id -> Uuid,
            tenant_id -> Uuid,
            slug -> Text,
            action -> Text,
            actor -> Text,
            reason -> Text,
            at -> Timestamptz,
        }
    }

    diesel::table! {
        management.tenant_domains (id) {
            id -> Uuid,
            tenant_id -> Uuid,
            domain -> Text,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        management.tenant_migration_failures (id) {
            id -> Uuid,
            tenant_id -> Uuid,
            from_version -> Int4,
            to_version -> Int4,
            failed_version -> Int4,
            error -> Text,
            failed_at -> Timestamptz,
        }
    }

    diesel::joinable!(tenants -> plans (plan_code));
    diesel::joinable!(tenant_migration_failures -> tenants (tenant_id));
    diesel::joinable!(tenant_domains -> tenants (tenant_id));
    diesel::allow_tables_to_appear_in_same_query!(
        plans,
        tenants,
        tenant_domains,
        tenant_migration_failures,
        tenant_events,
    );
}

/// Tables inside every `tenant_<slug>` schema (see `tenant_template/`).
pub mod tenant {
    diesel::table! {
        users (id) {
            id -> Uuid,
            email -> Text,
            display_name -> Text,
            password_hash -> Text,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            disabled_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        projects (id) {
            id -> Uuid,
            name -> Text,
            description -> Nullable<Text>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        tasks (id) {
            id -> Uuid,
            project_id -> Uuid,
            title -> Text,
            status -> Text,
            assignee_id -> Nullable<Uuid>,
            due_date -> Nullable<Date>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        roles (id) {
            id -> Uuid,
            key -> Text,
            name -> Text,
            description -> Text,
            parent_id -> Nullable<Uuid>,
            builtin -> Bool,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        role_permissions (role_id, permission) {
            role_id -> Uuid,
            permission -> Text,
        }
    }

    diesel::table! {
        role_assignments (user_id, role_id) {
            user_id -> Uuid,
            role_id -> Uuid,
            expires_at -> Nullable<Timestamptz>,
            granted_by -> Nullable<Uuid>,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        sessions (id) {
            id -> Uuid,
            user_id -> Uuid,
            created_at -> Timestamptz,
            last_used_at -> Timestamptz,
            expires_at -> Timestamptz,
            revoked_at -> Nullable<Timestamptz>,
            revoked_reason -> Nullable<Text>,
            user_agent -> Nullable<Text>,
        }
    }

    diesel::table! {
        refresh_tokens (id) {
            id -> Uuid,
            session_id -> Uuid,
            token_hash -> Bytea,
            created_at -> Timestamptz,
            used_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        login_attempts (email) {
            email -> Text,
            failures -> Int4,
            last_failure_at -> Timestamptz,
            locked_until -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        api_keys (id) {
            id -> Uuid,
            user_id -> Uuid,
            name -> Text,
            prefix -> Text,
            secret_hash -> Bytea,
            permissions -> Array<Text>,
            created_at -> Timestamptz,
            expires_at -> Nullable<Timestamptz>,
            last_used_at -> Nullable<Timestamptz>,
            revoked_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        teams (id) {
            id -> Uuid,
            name -> Text,
            parent_id -> Nullable<Uuid>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        team_members (team_id, user_id) {
            team_id -> Uuid,
            user_id -> Uuid,
            added_at -> Timestamptz,
        }
    }

    diesel::table! {
        invitations (id) {
            id -> Uuid,
            email -> Text,
            role_id -> Nullable<Uuid>,
            token_hash -> Bytea,
            invited_by -> Nullable<Uuid>,
            created_at -> Timestamptz,
            expires_at -> Timestamptz,
            accepted_at -> Nullable<Timestamptz>,
            accepted_user_id -> Nullable<Uuid>,
            revoked_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        audit_events (id) {
            id -> Uuid,
            at -> Timestamptz,
            actor_kind -> Text,
            actor_user_id -> Nullable<Uuid>,
            action -> Text,
            target_type -> Nullable<Text>,
            target_id -> Nullable<Uuid>,
            detail -> Text,
        }
    }

    diesel::joinable!(tasks -> projects (project_id));
    diesel::joinable!(tasks -> users (assignee_id));
    diesel::joinable!(role_permissions -> roles (role_id));
    diesel::joinable!(role_assignments -> roles (role_id));
    diesel::joinable!(role_assignments -> users (user_id));
    diesel::joinable!(sessions -> users (user_id));
    diesel::joinable!(refresh_tokens -> sessions (session_id));
    diesel::joinable!(api_keys -> users (user_id));
    diesel::joinable!(team_members -> teams (team_id));
    diesel::joinable!(team_members -> users (user_id));
    diesel::joinable!(invitations -> roles (role_id));
    diesel::allow_tables_to_appear_in_same_query!(
        users,
        projects,
        tasks,
        roles,
        role_permissions,
        role_assignments,
        sessions,
        refresh_tokens,
        login_attempts,
        api_keys,
        teams,
        team_members,
        invitations,
        audit_events,
    );
}
