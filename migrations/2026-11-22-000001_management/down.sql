DROP TABLE management.tenant_domains;
DROP TABLE management.tenants;
DROP TABLE management.plans;
