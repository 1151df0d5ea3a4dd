-- Runs with search_path bound to the new tenant's schema: every name here is
-- unqualified and lands in tenant_<slug>.
CREATE TABLE users (
    id             uuid PRIMARY KEY,
    email          text NOT NULL,
    display_name   text NOT NULL,
    password_hash  text NOT NULL,
    role           text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'member')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Email is unique per tenant, whatever its case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE projects (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id           uuid PRIMARY KEY,
    project_id   uuid NOT NULL,
    title        text NOT NULL,
    status       text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done')),
    assignee_id  uuid,
    due_date     date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_project_id_fkey FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE,
    CONSTRAINT tasks_assignee_id_fkey FOREIGN KEY (assignee_id) REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX tasks_project_id_idx ON tasks (project_id, id);
CREATE INDEX tasks_assignee_id_idx ON tasks (assignee_id, id);
CREATE INDEX tasks_status_idx ON tasks (status, id);
