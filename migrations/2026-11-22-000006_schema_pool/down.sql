-- The pool's schemas and roles hold no tenant data: drop them with the table.
DO $$
DECLARE e record;
BEGIN
    FOR e IN SELECT schema_name, db_role FROM management.schema_pool LOOP
        EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', e.schema_name);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = e.db_role) THEN
            EXECUTE format('DROP OWNED BY %I', e.db_role);
            EXECUTE format('DROP ROLE %I', e.db_role);
        END IF;
    END LOOP;
END $$;
DROP TABLE management.schema_pool;
