DROP TRIGGER tenant_domains_announce_truncate ON management.tenant_domains;
DROP TRIGGER tenant_domains_announce_change ON management.tenant_domains;
DROP TRIGGER tenants_announce_truncate ON management.tenants;
DROP TRIGGER tenants_announce_change ON management.tenants;
DROP FUNCTION management.announce_tenant_change();
