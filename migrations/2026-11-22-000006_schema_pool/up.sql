-- Warm pool: tenant schemas made ahead of time (template applied, database
-- role created), so that createTenant only renames one instead of running
-- the whole template. Entries are named pool_<hex>; one is claimed with
-- FOR UPDATE SKIP LOCKED inside the provisioning transaction.
CREATE TABLE management.schema_pool (
    schema_name       text PRIMARY KEY CHECK (schema_name ~ '^pool_[0-9a-f]{12}$'),
    db_role           text NOT NULL UNIQUE CHECK (db_role ~ '^pool_[0-9a-f]{12}$'),
    template_version  integer NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schema_pool_version_idx ON management.schema_pool (template_version, created_at);
