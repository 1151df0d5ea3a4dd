from django.apps import AppConfig


class TenantAppConfig(AppConfig):
    name = "tenantapp"
    default_auto_field = "django.db.models.BigAutoField"
