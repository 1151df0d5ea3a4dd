-- Each tenant gets a PostgreSQL role with rights on its own schema only;
-- tenant transactions run under it. The name carries a random part, so
-- databases sharing one cluster never collide. Tenants made before this
-- migration get their role when the server or `strata migrate` next starts.
ALTER TABLE management.tenants ADD COLUMN db_role text;
ALTER TABLE management.tenants ADD CONSTRAINT tenants_db_role_key UNIQUE (db_role);
ALTER TABLE management.tenants ADD CONSTRAINT tenants_db_role_format
    CHECK (db_role ~ '^[a-z][a-z0-9_]{1,62}$');
