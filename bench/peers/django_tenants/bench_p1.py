#!/usr/bin/env python3
"""P1 on django-tenants: create N tenants one after another, timing each.

Usage: python bench_p1.py --count N [--prefix dj] [--warmup K] [--keep] [--verbose]

Database settings come from the environment (DATABASE_URL, or PGHOST, PGPORT,
PGUSER, PGPASSWORD, PGDATABASE; see djbench/settings.py).

Sets up the public schema once (migrate_schemas --shared), then for each tenant
times Client(schema_name=..., name=...).save(): with auto_create_schema that
save inserts the tenant row, runs CREATE SCHEMA and all tenant migrations
(tables, indexes, constraints, the seeded built-in roles, the access version
and its triggers). The tenant's Domain
row is saved right after, outside the timed section. No password hashing.

Prints one JSON line on stdout:
  {"count", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "tables", "app_tables"}
where "tables" counts pg_tables in one created tenant schema (django-tenants
adds its own django_migrations table there) and "app_tables" leaves
django_migrations out. The created schemas are dropped unless --keep.
"""
import argparse
import json
import os
import secrets
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbench.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from customers.models import Client, Domain  # noqa: E402

EXPECTED_APP_TABLES = 15


def percentile(sorted_ms, p):
    # Same rule as Strata's benches: the sample at round((n - 1) * p).
    return sorted_ms[int(round((len(sorted_ms) - 1) * p))]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def create_tenant(schema_name):
    client = Client(schema_name=schema_name, name=schema_name)
    t0 = time.perf_counter()
    client.save(verbosity=0)  # INSERT + CREATE SCHEMA + tenant migrations
    elapsed_ms = (time.perf_counter() - t0) * 1000.0
    Domain(domain=f"{schema_name}.bench.localhost", tenant=client, is_primary=True).save()
    return client, elapsed_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, required=True, help="tenants to create and time")
    ap.add_argument("--prefix", default="dj", help="schema name prefix (default: dj)")
    ap.add_argument("--warmup", type=int, default=0,
                    help="tenants created first and left out of the figures (default: 0)")
    ap.add_argument("--keep", action="store_true", help="keep the created tenants")
    ap.add_argument("--verbose", action="store_true",
                    help="print each creation's time on stderr")
    args = ap.parse_args()
    if args.count < 1:
        ap.error("--count must be at least 1")

    # Public schema: shared apps (tenant + domain tables), once.
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    # The docs' public tenant; its schema already exists, so nothing is created.
    if not Client.objects.filter(schema_name="public").exists():
        public = Client(schema_name="public", name="public")
        public.save(verbosity=0)
        Domain(domain="bench.localhost", tenant=public, is_primary=True).save()

    run = secrets.token_hex(3)
    created = []
    timings = []
    try:
        for i in range(args.warmup + args.count):
            schema = f"{args.prefix}_{run}_{i:05d}"
            client, ms = create_tenant(schema)
            created.append(client)
            if args.verbose:
                log(f"{schema}: {ms:.1f} ms{' (warm-up)' if i < args.warmup else ''}")
            if i >= args.warmup:
                timings.append(ms)

        schemas = [c.schema_name for c in created]
        with connection.cursor() as cur:
            cur.execute(
                "SELECT schemaname, count(*),"
                " count(*) FILTER (WHERE tablename <> 'django_migrations')"
                " FROM pg_tables WHERE schemaname = ANY(%s) GROUP BY schemaname",
                [schemas],
            )
            counts = {s: (t, a) for s, t, a in cur.fetchall()}
            first = schemas[args.warmup]
            cur.execute(
                f'SELECT (SELECT count(*) FROM "{first}".roles WHERE builtin),'
                f' (SELECT count(*) FROM "{first}".role_permissions),'
                f' (SELECT count(*) FROM "{first}".access_version),'
                f" (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                f" JOIN pg_namespace n ON n.oid = c.relnamespace"
                f" WHERE n.nspname = '{first}' AND t.tgname LIKE '%bump_access_version'"
                f" AND t.tgenabled = 'A')"
            )
            roles, perms, versions, bumps = cur.fetchone()
        tables, app_tables = counts.get(first, (0, 0))
        bad = [s for s in schemas if counts.get(s, (0, 0))[1] != EXPECTED_APP_TABLES]
        if bad or (roles, perms, versions, bumps) != (4, 12, 1, 3):
            log(f"unexpected tenant contents: schemas without {EXPECTED_APP_TABLES} tables: "
                f"{bad[:5]}; {first} has {roles} built-in roles, {perms} role permissions, "
                f"{versions} access version rows, {bumps} access version triggers")
            sys.exit(1)
    finally:
        if not args.keep:
            for client in created:
                # Drops the schema (CASCADE) and the tenant row; Domain follows.
                client.delete(force_drop=True)

    timings.sort()
    print(json.dumps({
        "count": len(timings),
        "p50_ms": round(percentile(timings, 0.50), 3),
        "p95_ms": round(percentile(timings, 0.95), 3),
        "p99_ms": round(percentile(timings, 0.99), 3),
        "mean_ms": round(sum(timings) / len(timings), 3),
        "tables": tables,
        "app_tables": app_tables,
    }), flush=True)


if __name__ == "__main__":
    main()
