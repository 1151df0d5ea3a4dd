ALTER TABLE management.tenants DROP COLUMN db_role;
