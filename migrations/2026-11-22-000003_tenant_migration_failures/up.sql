-- Tenants whose template migration failed, and why: what `strata tenants
-- migrate` reports and the admin `templateStatus` query lists. A failed
-- tenant's own version stays where it was (its migration rolled back).
CREATE TABLE management.tenant_migration_failures (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES management.tenants (id) ON DELETE CASCADE,
    from_version    integer NOT NULL,
    to_version      integer NOT NULL,
    failed_version  integer NOT NULL,
    error           text NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_migration_failures_failed_at_idx
    ON management.tenant_migration_failures (failed_at DESC);
CREATE INDEX tenant_migration_failures_tenant_id_idx
    ON management.tenant_migration_failures (tenant_id);
