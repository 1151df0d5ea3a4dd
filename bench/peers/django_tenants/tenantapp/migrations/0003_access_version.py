# Written by hand to match tenant_template/0003_access_version/up.sql: the
# access_version table and its one row, the function that replaces the
# version, and the three statement triggers (enabled ALWAYS) that call it.

import django.contrib.postgres.functions
from django.db import migrations, models

ACCESS_VERSION_SQL = """
INSERT INTO access_version DEFAULT VALUES;

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

ALTER TABLE roles ENABLE ALWAYS TRIGGER roles_bump_access_version;
ALTER TABLE role_permissions ENABLE ALWAYS TRIGGER role_permissions_bump_access_version;
ALTER TABLE role_assignments ENABLE ALWAYS TRIGGER role_assignments_bump_access_version;
"""

REVERSE_SQL = """
DROP TRIGGER role_assignments_bump_access_version ON role_assignments;
DROP TRIGGER role_permissions_bump_access_version ON role_permissions;
DROP TRIGGER roles_bump_access_version ON roles;
DROP FUNCTION bump_access_version();
DELETE FROM access_version;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tenantapp', '0002_seed_builtin_roles'),
    ]

    operations = [
        migrations.CreateModel(
            name='AccessVersion',
            fields=[
                ('only_row', models.BooleanField(db_default=True, primary_key=True, serialize=False)),
                ('version', models.UUIDField(db_default=django.contrib.postgres.functions.RandomUUID())),
            ],
            options={
                'db_table': 'access_version',
                'constraints': [models.CheckConstraint(condition=models.Q(('only_row', True)), name='access_version_only_row_check')],
            },
        ),
        migrations.RunSQL(ACCESS_VERSION_SQL, REVERSE_SQL),
    ]
