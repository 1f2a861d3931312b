-- Login lockout: failed logins counted per account (the email as typed,
-- lower-cased, known or not, so an unknown email behaves like a wrong
-- password) and per client address, in the database so that every atelierd
-- shares them. A key reaching its limit within the window is locked until
-- locked_until; `atelier users unlock` deletes its row. New tables only:
-- nothing existing is rewritten or locked.
CREATE TABLE login_throttle (
    key               TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 400),
    failures          INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    window_started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until      TIMESTAMPTZ
);
-- Stale keys (window and lock over) are forgotten a few at a time as
-- failures come in, found through this index: the table cannot grow without
-- bound however many emails are tried.
CREATE INDEX login_throttle_window ON login_throttle (window_started_at);

-- What operators did to accounts (unlock, enable, disable), by whom and when.
CREATE TABLE account_audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL
);
