-- simpang desk schema, SQLite dialect. Keep in step with ../postgres/0001_init.sql: the same
-- tables, columns and meanings; only the types differ. Times are Unix seconds (UTC).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    agency_id       TEXT,
    password_hash   TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    deactivated_at  INTEGER
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE reports (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket              TEXT NOT NULL UNIQUE,
    source              TEXT NOT NULL,
    status              TEXT NOT NULL,
    category_id         TEXT NOT NULL,
    title               TEXT NOT NULL,
    description         TEXT NOT NULL,
    address             TEXT NOT NULL,
    lat                 REAL,
    lon                 REAL,
    phone               TEXT,
    pin_hash            TEXT,
    agency_id           TEXT,
    operator_id         INTEGER REFERENCES users(id),
    officer_id          INTEGER REFERENCES users(id),
    merged_into         INTEGER REFERENCES reports(id),
    reject_reason       TEXT,
    incident_id         TEXT UNIQUE,
    incident_seq        INTEGER,
    incident_kind       TEXT,
    level               TEXT,
    site_id             TEXT,
    site_name           TEXT,
    camera              TEXT,
    evidence            TEXT,
    incident_started_at INTEGER,
    cleared_at          INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    verified_at         INTEGER,
    dispositioned_at    INTEGER,
    due_at              INTEGER,
    answered_at         INTEGER,
    closed_at           INTEGER,
    version             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX reports_status ON reports(status);
CREATE INDEX reports_agency ON reports(agency_id);
CREATE INDEX reports_created ON reports(created_at);

CREATE TABLE attachments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id     INTEGER NOT NULL REFERENCES reports(id),
    kind          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    bytes         BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX attachments_report ON attachments(report_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id       INTEGER NOT NULL REFERENCES reports(id),
    at              INTEGER NOT NULL,
    author_kind     TEXT NOT NULL,
    author_user_id  INTEGER REFERENCES users(id),
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX messages_report ON messages(report_id);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor_id     INTEGER REFERENCES users(id),
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    entity       TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    before_json  TEXT,
    after_json   TEXT
);
CREATE INDEX audit_entity ON audit_log(entity, entity_id);

CREATE TABLE dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    topic     TEXT NOT NULL,
    payload   BLOB NOT NULL,
    size      INTEGER NOT NULL,
    reason    TEXT NOT NULL
);

CREATE TABLE status_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    topic         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    published_at  INTEGER
);
CREATE INDEX status_outbox_pending ON status_outbox(published_at);
