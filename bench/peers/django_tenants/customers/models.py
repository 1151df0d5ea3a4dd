from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100)
    created_on = models.DateField(auto_now_add=True)

    # Creating a Client creates its schema and runs the tenant migrations
    # inside save().
    auto_create_schema = True
    # Schemas are dropped explicitly by the benchmark (delete(force_drop=True)).
    auto_drop_schema = False


class Domain(DomainMixin):
    pass
