-- The platform's own data. Tenant data never lives here, and nothing in a
-- tenant schema references these tables (Citus schema-based sharding rules
-- out foreign keys between tenant schemas and this one).
CREATE SCHEMA IF NOT EXISTS management;

CREATE TABLE management.plans (
    code                 text PRIMARY KEY,
    name                 text NOT NULL,
    price_cents          integer NOT NULL CHECK (price_cents >= 0),
    -- NULL means unlimited.
    max_seats            integer CHECK (max_seats > 0),
    max_projects         integer CHECK (max_projects > 0),
    api_calls_per_month  bigint NOT NULL CHECK (api_calls_per_month > 0),
    storage_gb           integer NOT NULL CHECK (storage_gb > 0),
    hipaa                boolean NOT NULL DEFAULT false,
    sort_order           integer NOT NULL DEFAULT 0
);

INSERT INTO management.plans
    (code, name, price_cents, max_seats, max_projects, api_calls_per_month, storage_gb, hipaa, sort_order)
VALUES
    ('free',         'Free',              0,    1,    3,    10000,     1, false, 1),
    ('professional', 'Professional',  29900,   10,   50,   100000,    50, false, 2),
    ('enterprise',   'Enterprise',    99900, NULL, NULL,  1000000,   500, true,  3),
    ('research',     'Research',      49900,   50,  200,   500000,   250, false, 4);

CREATE TABLE management.tenants (
    id                uuid PRIMARY KEY,
    slug              text NOT NULL,
    name              text NOT NULL,
    plan_code         text NOT NULL REFERENCES management.plans (code),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'suspended', 'deleted')),
    schema_name       text NOT NULL,
    template_version  integer NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT tenants_schema_name_key UNIQUE (schema_name),
    CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z][a-z0-9_]{1,39}$'),
    CONSTRAINT tenants_schema_name_format CHECK (schema_name = 'tenant_' || slug)
);

-- "Which tenants are behind" is one indexed query.
CREATE INDEX tenants_template_version_idx ON management.tenants (template_version);

CREATE TABLE management.tenant_domains (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES management.tenants (id) ON DELETE CASCADE,
    domain      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_domains_domain_key UNIQUE (domain),
    CONSTRAINT tenant_domains_domain_lowercase CHECK (domain = lower(domain))
);

CREATE INDEX tenant_domains_tenant_id_idx ON management.tenant_domains (tenant_id);
