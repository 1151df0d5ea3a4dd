DROP TABLE management.tenant_events;
ALTER TABLE management.tenants DROP COLUMN deleted_at;
