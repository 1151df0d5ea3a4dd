-- The access version: one value, replaced by every change to roles, their
-- permissions or who holds them, in the changing transaction. A server that
-- computed a user's effective permissions at one version may use them again
-- while the tenant is still at that version (and no assignment it counted
-- has expired since): reading this row costs a request far less than
-- walking the roles again. A random uuid, not a counter, so that no two
-- states of any tenant (a tenant dropped and imported again, say) ever
-- share a version.
CREATE TABLE access_version (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version   uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO access_version DEFAULT VALUES;

-- Names its table through the schema of the table that changed, not the
-- search_path: a change made with any search_path bumps its own tenant's
-- version, and the function names no schema (a schema renamed when a
-- warm-pool schema is claimed keeps working).
CREATE FUNCTION bump_access_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.access_version SET version = gen_random_uuid()', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;

CREATE TRIGGER roles_bump_access_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_version();
CREATE TRIGGER role_permissions_bump_access_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_version();
CREATE TRIGGER role_assignments_bump_access_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON role_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_version();

-- Fire with session_replication_role = replica too: a change that skipped
-- them would leave servers using permissions the roles no longer give.
-- (Logical replication's apply worker fires no statement triggers at all:
-- a subscriber gets the publisher's new version with the change, as long
-- as access_version is published with the role tables.)
ALTER TABLE roles ENABLE ALWAYS TRIGGER roles_bump_access_version;
ALTER TABLE role_permissions ENABLE ALWAYS TRIGGER role_permissions_bump_access_version;
ALTER TABLE role_assignments ENABLE ALWAYS TRIGGER role_assignments_bump_access_version;
