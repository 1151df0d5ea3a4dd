"""The tenant template's final shape (tenant_template/0001 to 0003) as Django models.

Table, index and constraint names follow the SQL so the two schemas can be
diffed. Differences Django cannot avoid are listed in README.md (FKs are
DEFERRABLE INITIALLY DEFERRED with ON DELETE emulated by the ORM, DEFAULT now()
is rendered as STATEMENT_TIMESTAMP(), and CHECK/constraint names are ours).
"""
import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.functions import RandomUUID
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce, Lower, Now

ZERO_UUID = uuid.UUID(int=0)


class User(models.Model):
    id = models.UUIDField(primary_key=True)
    email = models.TextField()
    display_name = models.TextField()
    password_hash = models.TextField()
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    # Added by step 0002; the step-0001 `role` column is dropped there.
    disabled_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "users"
        constraints = [
            models.UniqueConstraint(Lower("email"), name="users_email_key"),
        ]


class Project(models.Model):
    id = models.UUIDField(primary_key=True)
    name = models.TextField()
    description = models.TextField(null=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "projects"


class Task(models.Model):
    id = models.UUIDField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    title = models.TextField()
    status = models.TextField(db_default="todo")
    assignee = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, db_index=False)
    due_date = models.DateField(null=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "tasks"
        indexes = [
            models.Index(fields=["project", "id"], name="tasks_project_id_idx"),
            models.Index(fields=["assignee", "id"], name="tasks_assignee_id_idx"),
            models.Index(fields=["status", "id"], name="tasks_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["todo", "in_progress", "done"]),
                name="tasks_status_check",
            ),
        ]


class Role(models.Model):
    id = models.UUIDField(primary_key=True)
    key = models.TextField()
    name = models.TextField()
    description = models.TextField(db_default="")
    parent = models.ForeignKey(
        "self", on_delete=models.RESTRICT, null=True, db_index=False, related_name="children"
    )
    builtin = models.BooleanField(db_default=False)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "roles"
        constraints = [
            models.UniqueConstraint(fields=["key"], name="roles_key_key"),
            models.CheckConstraint(
                condition=Q(key__regex=r"^[a-z][a-z0-9_-]{1,39}$"), name="roles_key_format"
            ),
        ]


class RolePermission(models.Model):
    pk = models.CompositePrimaryKey("role", "permission")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, db_index=False)
    permission = models.TextField()

    class Meta:
        db_table = "role_permissions"
        constraints = [
            models.CheckConstraint(
                condition=Q(permission__regex=r"^[a-z_]+:[a-z_]+$"),
                name="role_permissions_permission_check",
            ),
        ]


class RoleAssignment(models.Model):
    pk = models.CompositePrimaryKey("user", "role")
    user = models.ForeignKey(User, on_delete=models.CASCADE, db_index=False)
    role = models.ForeignKey(Role, on_delete=models.RESTRICT, db_index=False)
    expires_at = models.DateTimeField(null=True)
    granted_by = models.UUIDField(null=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "role_assignments"
        indexes = [
            models.Index(fields=["role"], name="role_assignments_role_id_idx"),
        ]


class Session(models.Model):
    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, db_index=False)
    created_at = models.DateTimeField(db_default=Now())
    last_used_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True)
    revoked_reason = models.TextField(null=True)
    user_agent = models.TextField(null=True)

    class Meta:
        db_table = "sessions"
        indexes = [
            models.Index(fields=["user"], name="sessions_user_id_idx"),
        ]


class RefreshToken(models.Model):
    id = models.UUIDField(primary_key=True)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, db_index=False)
    token_hash = models.BinaryField()
    created_at = models.DateTimeField(db_default=Now())
    used_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "refresh_tokens"
        indexes = [
            models.Index(fields=["session"], name="refresh_tokens_session_id_idx"),
        ]


class LoginAttempt(models.Model):
    email = models.TextField(primary_key=True)
    failures = models.IntegerField(db_default=0)
    last_failure_at = models.DateTimeField(db_default=Now())
    locked_until = models.DateTimeField(null=True)

    class Meta:
        db_table = "login_attempts"


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, db_index=False)
    name = models.TextField()
    prefix = models.TextField()
    secret_hash = models.BinaryField()
    permissions = ArrayField(models.TextField())
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField(null=True)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "api_keys"
        indexes = [
            models.Index(fields=["user"], name="api_keys_user_id_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["prefix"], name="api_keys_prefix_key"),
        ]


class Team(models.Model):
    id = models.UUIDField(primary_key=True)
    name = models.TextField()
    parent = models.ForeignKey(
        "self", on_delete=models.RESTRICT, null=True, db_index=False, related_name="children"
    )
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "teams"
        constraints = [
            # Sibling teams have different names, whatever their case.
            models.UniqueConstraint(
                Coalesce("parent", Value(ZERO_UUID, output_field=models.UUIDField())),
                Lower("name"),
                name="teams_name_key",
            ),
        ]


class TeamMember(models.Model):
    pk = models.CompositePrimaryKey("team", "user")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, db_index=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, db_index=False)
    added_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "team_members"
        indexes = [
            models.Index(fields=["user"], name="team_members_user_id_idx"),
        ]


class Invitation(models.Model):
    id = models.UUIDField(primary_key=True)
    email = models.TextField()
    role = models.ForeignKey(Role, on_delete=models.SET_NULL, null=True, db_index=False)
    token_hash = models.BinaryField()
    invited_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, db_index=False, db_column="invited_by",
        related_name="invitations_sent",
    )
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True)
    accepted_user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, db_index=False,
        related_name="invitations_accepted",
    )
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "invitations"
        constraints = [
            # One open invitation per email.
            models.UniqueConstraint(
                Lower("email"),
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitations_open_email_key",
            ),
        ]


class AuditEvent(models.Model):
    id = models.UUIDField(primary_key=True)
    at = models.DateTimeField(db_default=Now())
    actor_kind = models.TextField()
    actor_user_id = models.UUIDField(null=True)
    action = models.TextField()
    target_type = models.TextField(null=True)
    target_id = models.UUIDField(null=True)
    detail = models.TextField(db_default="")

    class Meta:
        db_table = "audit_events"
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_kind__in=["user", "admin", "api_key", "anonymous"]),
                name="audit_events_actor_kind_check",
            ),
        ]


class AccessVersion(models.Model):
    """Template step 3: one row, replaced by every change to roles, their
    permissions or who holds them (triggers in migration 0003)."""

    only_row = models.BooleanField(primary_key=True, db_default=True)
    version = models.UUIDField(db_default=RandomUUID())

    class Meta:
        db_table = "access_version"
        constraints = [
            models.CheckConstraint(condition=Q(only_row=True), name="access_version_only_row_check"),
        ]
