"""Minimal django-tenants project for the P1 (create tenant) peer benchmark.

Database settings come from the environment: DATABASE_URL
(postgres://user:pass@host:port/dbname) if set, otherwise the libpq-style
PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE variables.
"""
import os
from urllib.parse import parse_qsl, unquote, urlparse

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "djbench.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _database():
    url = os.environ.get("DATABASE_URL")
    options = {}
    if url:
        u = urlparse(url)
        if u.scheme not in ("postgres", "postgresql"):
            raise RuntimeError("DATABASE_URL must be a postgres:// URL")
        name = unquote(u.path.lstrip("/"))
        host, port = u.hostname or "", u.port or ""
        user = unquote(u.username or "")
        password = unquote(u.password or "")
        # Query parameters (sslmode=..., host=/socket/dir, ...) go to libpq.
        for k, v in parse_qsl(u.query):
            if k == "host":
                host = v
            elif k == "port":
                port = v
            else:
                options[k] = v
    else:
        host = os.environ.get("PGHOST", "127.0.0.1")
        port = os.environ.get("PGPORT", "5432")
        user = os.environ.get("PGUSER", "postgres")
        password = os.environ.get("PGPASSWORD", "")
        name = os.environ.get("PGDATABASE", "djbench")
    return {
        # django-tenants' backend: a PostgreSQL backend that sets search_path.
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "HOST": host,
        "PORT": str(port),
        "OPTIONS": options,
    }


DATABASES = {"default": _database()}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

# Per the django-tenants docs: django_tenants first, the app holding the tenant
# and domain models in SHARED_APPS, tenant-only apps in TENANT_APPS.
SHARED_APPS = [
    "django_tenants",
    "customers",
    # django-tenants imports ContentType, so contenttypes must be installed; it
    # stays shared-only (as in the docs), so tenants get no django_content_type.
    "django.contrib.contenttypes",
]
TENANT_APPS = [
    "tenantapp",
]
INSTALLED_APPS = SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "WARNING"},
}
