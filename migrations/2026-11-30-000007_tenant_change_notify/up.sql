-- Every committed change to a tenant or a custom domain is announced on the
-- channel strata_tenants, so servers can keep tenant lookups cached until
-- they change instead of re-reading them every second. The payload names
-- what changed: 't:<slug>' for a tenant, 'd:<domain>' for a domain, '*' for
-- a TRUNCATE (everything). NOTIFY is transactional: the announcement goes
-- out on commit, or never.
CREATE FUNCTION management.announce_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('strata_tenants', '*');
    ELSIF TG_TABLE_NAME = 'tenants' THEN
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('strata_tenants', 't:' || OLD.slug);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('strata_tenants', 't:' || NEW.slug);
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('strata_tenants', 'd:' || OLD.domain);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('strata_tenants', 'd:' || NEW.domain);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_announce_change
    AFTER INSERT OR UPDATE OR DELETE ON management.tenants
    FOR EACH ROW EXECUTE FUNCTION management.announce_tenant_change();
CREATE TRIGGER tenants_announce_truncate
    AFTER TRUNCATE ON management.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION management.announce_tenant_change();
CREATE TRIGGER tenant_domains_announce_change
    AFTER INSERT OR UPDATE OR DELETE ON management.tenant_domains
    FOR EACH ROW EXECUTE FUNCTION management.announce_tenant_change();
CREATE TRIGGER tenant_domains_announce_truncate
    AFTER TRUNCATE ON management.tenant_domains
    FOR EACH STATEMENT EXECUTE FUNCTION management.announce_tenant_change();

-- Also while replicating or restoring (session_replication_role = replica).
-- Servers trust the feed only while all four are enabled this way.
ALTER TABLE management.tenants ENABLE ALWAYS TRIGGER tenants_announce_change;
ALTER TABLE management.tenants ENABLE ALWAYS TRIGGER tenants_announce_truncate;
ALTER TABLE management.tenant_domains ENABLE ALWAYS TRIGGER tenant_domains_announce_change;
ALTER TABLE management.tenant_domains ENABLE ALWAYS TRIGGER tenant_domains_announce_truncate;

-- A trigger function is never called directly; nobody else needs it.
REVOKE EXECUTE ON FUNCTION management.announce_tenant_change() FROM PUBLIC;
