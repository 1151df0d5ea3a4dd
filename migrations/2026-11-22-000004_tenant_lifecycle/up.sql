-- Soft deletion and the record of every lifecycle change. Events outlive
-- the tenant (a purge deletes the row), so they name it by id and slug
-- without a foreign key.
ALTER TABLE management.tenants ADD COLUMN deleted_at timestamptz;

CREATE TABLE management.tenant_events (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    slug       text NOT NULL,
    action     text NOT NULL CHECK (action IN ('suspended', 'resumed', 'deleted', 'restored', 'purged')),
    actor      text NOT NULL,
    reason     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_events_tenant_id_idx ON management.tenant_events (tenant_id, at DESC);
