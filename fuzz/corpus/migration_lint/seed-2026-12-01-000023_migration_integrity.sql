-- atelier:phase expand
-- Our record of each applied migration, beside diesel's
-- __diesel_schema_migrations: what exactly was applied (SHA-256 of its up.sql
-- and down.sql), by whom, when, how long it took and its phase. `atelier
-- migrate status` compares it with the files this build embeds.
CREATE TABLE atelier_migrations (
    version      TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    up_sha256    TEXT NOT NULL,
    down_sha256  TEXT NOT NULL,
    phase        TEXT NOT NULL CHECK (phase IN ('expand', 'contract')),
    applied_by   TEXT NOT NULL,
    applied_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms  BIGINT,
    -- Applied before its checksums were recorded (older build, or a crash
    -- between applying and recording): checksums are this build's, adopted.
    adopted      BOOLEAN NOT NULL DEFAULT false
);

-- One row per `atelier migrate repair` of a migration: who re-recorded which
-- checksums after looking at an edited or unrecorded migration.
CREATE TABLE atelier_migration_repairs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version          TEXT NOT NULL,
    name             TEXT NOT NULL,
    actor            TEXT NOT NULL,
    repaired_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    old_up_sha256    TEXT,
    old_down_sha256  TEXT,
    new_up_sha256    TEXT NOT NULL,
    new_down_sha256  TEXT NOT NULL
);
