DELETE FROM management.tenant_events WHERE action IN ('exported', 'imported', 'cloned');
ALTER TABLE management.tenant_events DROP CONSTRAINT tenant_events_action_check;
ALTER TABLE management.tenant_events ADD CONSTRAINT tenant_events_action_check CHECK (
    action IN ('suspended', 'resumed', 'deleted', 'restored', 'purged')
);
