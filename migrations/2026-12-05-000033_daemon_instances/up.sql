-- atelier:phase expand
-- Each running atelierd's heartbeat, for `atelier status`: written at start and
-- every few seconds, removed on a clean stop. A row whose heartbeat is old is a
-- process that died without stopping.
CREATE TABLE daemon_instances (
    id UUID PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    roles TEXT NOT NULL,
    -- Where its /ready and /metrics answer (NULL: it serves no HTTP).
    http_url TEXT,
    metrics_url TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
