-- Identity and access inside the tenant: roles and permissions, sessions,
-- API keys, teams, invitations, sign-in throttling and an audit trail.
-- Runs with search_path bound to the tenant's schema, like every step.

ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- Roles. Built-in roles are seeded below and cannot be changed through the
-- API; custom roles may inherit a parent role's permissions.
CREATE TABLE roles (
    id           uuid PRIMARY KEY,
    key          text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    parent_id    uuid,
    builtin      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roles_key_key UNIQUE (key),
    CONSTRAINT roles_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,39}$'),
    CONSTRAINT roles_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES roles (id) ON DELETE RESTRICT
);

-- A role's own permissions (`resource:action`, from the catalogue in
-- src/domain/permissions.rs); inherited ones are not repeated here.
CREATE TABLE role_permissions (
    role_id     uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission  text NOT NULL CHECK (permission ~ '^[a-z_]+:[a-z_]+$'),
    PRIMARY KEY (role_id, permission)
);

-- Who holds which role, until when (NULL: no end).
CREATE TABLE role_assignments (
    user_id     uuid NOT NULL,
    role_id     uuid NOT NULL,
    expires_at  timestamptz,
    granted_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id),
    CONSTRAINT role_assignments_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT role_assignments_role_id_fkey FOREIGN KEY (role_id) REFERENCES roles (id) ON DELETE RESTRICT
);
CREATE INDEX role_assignments_role_id_idx ON role_assignments (role_id);

INSERT INTO roles (id, key, name, description, builtin) VALUES
    (gen_random_uuid(), 'viewer', 'Viewer', 'Reads projects, tasks and members.', true);
INSERT INTO roles (id, key, name, description, parent_id, builtin)
    SELECT gen_random_uuid(), 'member', 'Member', 'A viewer who also writes projects and tasks and makes personal API keys.', id, true
    FROM roles WHERE key = 'viewer';
INSERT INTO roles (id, key, name, description, parent_id, builtin)
    SELECT gen_random_uuid(), 'admin', 'Admin', 'A member who also manages members, roles, teams, API keys and reads the audit trail.', id, true
    FROM roles WHERE key = 'member';
INSERT INTO roles (id, key, name, description, parent_id, builtin)
    SELECT gen_random_uuid(), 'owner', 'Owner', 'An admin who also sees billing. A tenant always keeps at least one owner.', id, true
    FROM roles WHERE key = 'admin';

INSERT INTO role_permissions (role_id, permission)
    SELECT r.id, p.permission FROM roles r
    JOIN (VALUES
        ('viewer', 'projects:read'), ('viewer', 'tasks:read'), ('viewer', 'members:read'),
        ('member', 'projects:write'), ('member', 'tasks:write'), ('member', 'apikeys:create'),
        ('admin', 'members:manage'), ('admin', 'roles:manage'), ('admin', 'teams:manage'),
        ('admin', 'apikeys:manage'), ('admin', 'audit:read'),
        ('owner', 'billing:read')
    ) AS p (role_key, permission) ON p.role_key = r.key;

-- Users from version 1 keep their access.
INSERT INTO role_assignments (user_id, role_id)
    SELECT u.id, r.id FROM users u JOIN roles r ON r.key = u.role;
ALTER TABLE users DROP COLUMN role;

-- Sessions: one per sign-in. Every refresh token of a session belongs to its
-- family; reusing a spent one revokes the session.
CREATE TABLE sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text,
    user_agent      text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- SHA-256 of the token's secret part; the token itself is never stored.
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Failed sign-ins per email (lower case), for throttling.
CREATE TABLE login_attempts (
    email            text PRIMARY KEY,
    failures         integer NOT NULL DEFAULT 0,
    last_failure_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz
);

-- API keys: the secret is shown once; `prefix` identifies the key in lists.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL,
    permissions   text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

-- Teams nest; a team with sub-teams cannot be deleted.
CREATE TABLE teams (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    parent_id   uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT teams_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES teams (id) ON DELETE RESTRICT
);
-- Sibling teams have different names, whatever their case.
CREATE UNIQUE INDEX teams_name_key
    ON teams (coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));

CREATE TABLE team_members (
    team_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id),
    CONSTRAINT team_members_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE CASCADE,
    CONSTRAINT team_members_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX team_members_user_id_idx ON team_members (user_id);

-- Invitations: single-use token (stored hashed), a role, an expiry.
CREATE TABLE invitations (
    id                uuid PRIMARY KEY,
    email             text NOT NULL,
    -- NULL once its role is deleted (only possible when it is no longer open).
    role_id           uuid,
    token_hash        bytea NOT NULL,
    invited_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    accepted_at       timestamptz,
    accepted_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at        timestamptz,
    CONSTRAINT invitations_role_id_fkey FOREIGN KEY (role_id) REFERENCES roles (id) ON DELETE SET NULL
);
-- One open invitation per email.
CREATE UNIQUE INDEX invitations_open_email_key ON invitations (lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Who changed access, when: written in the same transaction as the change.
CREATE TABLE audit_events (
    id             uuid PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_kind     text NOT NULL CHECK (actor_kind IN ('user', 'admin', 'api_key', 'anonymous')),
    actor_user_id  uuid,
    action         text NOT NULL,
    target_type    text,
    target_id      uuid,
    detail         text NOT NULL DEFAULT ''
);
