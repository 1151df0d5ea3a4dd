# Written by hand: template step 3 exactly as Strata applies it. The database
# runs tenant_template/0003_access_version/up.sql itself (the access_version
# table and its row, the bump function, the three statement triggers enabled
# ALWAYS), so the two cannot drift apart; Django's state learns of the table
# from the model.

from pathlib import Path

import django.contrib.postgres.functions
from django.db import migrations, models

STEP_3 = Path(__file__).resolve().parents[5] / "tenant_template" / "0003_access_version" / "up.sql"

REVERSE_SQL = """
DROP FUNCTION bump_access_version() CASCADE;
DROP TABLE access_version;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tenantapp', '0002_seed_builtin_roles'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            ],
            database_operations=[migrations.RunSQL(STEP_3.read_text(), REVERSE_SQL)],
        ),
    ]
