-- atelier:phase expand
-- The deployment checklist as code (`atelier deploy`, `rollback`, `history`,
-- `lock`): what each deployment did, step by step, and the lease that keeps
-- two of them (or a deploy and a migration) from overlapping.

-- A deployment is a deploy or a rollback; what it applied; where it failed.
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
ALTER TABLE deployments ADD COLUMN migrations JSONB NOT NULL DEFAULT '[]';
ALTER TABLE deployments ADD COLUMN failed_step TEXT;

-- The journal: one row per step of a deployment, written when the step
-- starts and completed when it ends, so a deploy killed mid-way is found and
-- reconciled by the next command.
CREATE TABLE deployment_steps (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id BIGINT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    step          TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    -- running, ok, failed, undone, skipped
    outcome       TEXT NOT NULL DEFAULT 'running',
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deployment_steps_deployment ON deployment_steps (deployment_id, id);

-- The deploy lock: a lease on one row. Its holder heartbeats; a lease past
-- `expires_at` may be taken over (and the taking over says so).
CREATE TABLE deploy_lease (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    token        UUID NOT NULL,
    owner_user   TEXT NOT NULL,
    owner_host   TEXT NOT NULL,
    owner_pid    BIGINT NOT NULL,
    command      TEXT NOT NULL,
    message      TEXT,
    acquired_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);

-- The lock's audit: every acquisition, refusal, takeover and release.
CREATE TABLE deploy_lock_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    action     TEXT NOT NULL,
    owner_user TEXT NOT NULL,
    owner_host TEXT NOT NULL,
    owner_pid  BIGINT NOT NULL,
    command    TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);

-- Which atelierd handled each canary ping (its slot, or host:pid), so a
-- deploy waits for a ping handled by the new slot's own consumers.
ALTER TABLE canary_pings ADD COLUMN handled_by TEXT;
