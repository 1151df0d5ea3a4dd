-- Exports, imports and clones are recorded with the lifecycle changes: who
-- took a tenant's data out, and where a tenant's data came from.
ALTER TABLE management.tenant_events DROP CONSTRAINT tenant_events_action_check;
ALTER TABLE management.tenant_events ADD CONSTRAINT tenant_events_action_check CHECK (
    action IN ('suspended', 'resumed', 'deleted', 'restored', 'purged', 'exported', 'imported', 'cloned')
);
