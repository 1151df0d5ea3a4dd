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

    diesel::joinable!(tenants -> plans (plan_code));
    diesel::joinable!(tenant_domains -> tenants (tenant_id));
    diesel::allow_tables_to_appear_in_same_query!(plans, tenants, tenant_domains);
}

/// Tables inside every `tenant_<slug>` schema (see `tenant_template/`).
pub mod tenant {
    diesel::table! {
        users (id) {
            id -> Uuid,
            email -> Text,
            display_name -> Text,
            password_hash -> Text,
            role -> Text,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
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

    diesel::joinable!(tasks -> projects (project_id));
    diesel::joinable!(tasks -> users (assignee_id));
    diesel::allow_tables_to_appear_in_same_query!(users, projects, tasks);
}
