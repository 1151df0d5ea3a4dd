-- The record of who took a tenant's data out is not thrown away to undo a
-- migration: refuse while such events exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM management.tenant_events WHERE action IN ('exported', 'imported', 'cloned')) THEN
        RAISE EXCEPTION 'management.tenant_events records exports, imports or clones; keep this migration';
    END IF;
END $$;
ALTER TABLE management.tenant_events DROP CONSTRAINT tenant_events_action_check;
ALTER TABLE management.tenant_events ADD CONSTRAINT tenant_events_action_check CHECK (
    action IN ('suspended', 'resumed', 'deleted', 'restored', 'purged')
);
