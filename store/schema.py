"""The SQLite schema, its version, and the migration of a database an older release wrote."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4
# Events and images belong to their session: deleting the session deletes them, and a write for
# a session that is gone fails instead of leaving orphans (foreign keys are on for every connection).
EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    type TEXT NOT NULL,  -- kept beside the payload so a replay never decodes it
    payload BLOB NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
"""
IMAGES_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, name)
) WITHOUT ROWID;
"""
# The webhook outbox: written in the commit of the event that causes it, so none is lost or made up.
DELIVERIES_TABLE = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,  -- the webhook-id
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status TEXT NOT NULL,
    last_error TEXT NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_session ON deliveries (session_id);
"""
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order, for paging
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    run_started_ns INTEGER NOT NULL,
    result TEXT,
    steps TEXT NOT NULL,
    metadata TEXT NOT NULL,
    checkpoints TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT ''  -- the API key (or client address) that created it
);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, seq);
-- How many sessions each owner has in each status, kept by the triggers below, so that counting
-- (on every create, for max_pending_per_client) does not read every session the owner ever had.
CREATE TABLE IF NOT EXISTS session_counts (
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (owner, status)
) WITHOUT ROWID;
"""
    + EVENTS_TABLE.format(name="events")
    + IMAGES_TABLE.format(name="images")
    + DELIVERIES_TABLE
)

# Made after any migration, since they may name columns an older file lacks.
INDEXES = """
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (owner, status);
CREATE TRIGGER IF NOT EXISTS session_counts_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_counts VALUES (NEW.owner, NEW.status, 1)
        ON CONFLICT (owner, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS session_counts_delete AFTER DELETE ON sessions BEGIN
    UPDATE session_counts SET n = n - 1 WHERE owner = OLD.owner AND status = OLD.status;
END;
CREATE TRIGGER IF NOT EXISTS session_counts_update AFTER UPDATE OF status, owner ON sessions
WHEN OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner BEGIN
    UPDATE session_counts SET n = n - 1 WHERE owner = OLD.owner AND status = OLD.status;
    INSERT INTO session_counts VALUES (NEW.owner, NEW.status, 1)
        ON CONFLICT (owner, status) DO UPDATE SET n = n + 1;
END;
"""

# Version 4 keeps session counts (made empty by the schema script): counted once from the sessions.
COUNT_SESSIONS = """
DELETE FROM session_counts;
INSERT INTO session_counts SELECT owner, status, COUNT(*) FROM sessions GROUP BY owner, status;
"""

# Version 1 had no foreign keys, no event type column and no owner. Orphans it may hold are dropped.
MIGRATE_1_TO_2 = (
    EVENTS_TABLE.format(name="events_v2")
    + IMAGES_TABLE.format(name="images_v2")
    + """
INSERT INTO events_v2
    SELECT session_id, id, json_extract(CAST(payload AS TEXT), '$.type'), payload FROM events
    WHERE session_id IN (SELECT id FROM sessions);
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
INSERT INTO images_v2 SELECT * FROM images WHERE session_id IN (SELECT id FROM sessions);
DROP TABLE images;
ALTER TABLE images_v2 RENAME TO images;
ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""
)


def prepare(connection: sqlite3.Connection) -> None:
    """Create what is missing, migrate an older database, refuse a newer one (DatabaseError)."""
    connection.executescript(SCHEMA)
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"its schema version {row[0]} is newer than this service's ({SCHEMA_VERSION}); "
            "run a newer release of the service, or point db_path elsewhere"
        )
    elif int(row[0]) < SCHEMA_VERSION:
        # Version 3 added only the deliveries table, which the schema script has just made.
        steps = (MIGRATE_1_TO_2 if int(row[0]) == 1 else "") + COUNT_SESSIONS
        done = f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';"
        connection.executescript(f"BEGIN IMMEDIATE; {steps} {done} COMMIT;")
    connection.executescript(INDEXES)
