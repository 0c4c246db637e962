-- simpang desk schema, PostgreSQL dialect. Keep in step with ../sqlite/0001_init.sql: the same
-- tables, columns and meanings; only the types differ. Times are Unix seconds (UTC).

CREATE TABLE users (
    id              BIGSERIAL PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    agency_id       TEXT,
    password_hash   TEXT NOT NULL,
    active          BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    deactivated_at  BIGINT
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE reports (
    id                  BIGSERIAL PRIMARY KEY,
    ticket              TEXT NOT NULL UNIQUE,
    source              TEXT NOT NULL,
    status              TEXT NOT NULL,
    category_id         TEXT NOT NULL,
    title               TEXT NOT NULL,
    description         TEXT NOT NULL,
    address             TEXT NOT NULL,
    lat                 DOUBLE PRECISION,
    lon                 DOUBLE PRECISION,
    phone               TEXT,
    pin_hash            TEXT,
    agency_id           TEXT,
    operator_id         BIGINT REFERENCES users(id),
    officer_id          BIGINT REFERENCES users(id),
    merged_into         BIGINT REFERENCES reports(id),
    reject_reason       TEXT,
    incident_id         TEXT UNIQUE,
    incident_seq        BIGINT,
    incident_kind       TEXT,
    level               TEXT,
    site_id             TEXT,
    site_name           TEXT,
    camera              TEXT,
    evidence            TEXT,
    incident_started_at BIGINT,
    cleared_at          BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    verified_at         BIGINT,
    dispositioned_at    BIGINT,
    due_at              BIGINT,
    answered_at         BIGINT,
    closed_at           BIGINT,
    version             BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX reports_status ON reports(status);
CREATE INDEX reports_agency ON reports(agency_id);
CREATE INDEX reports_created ON reports(created_at);

CREATE TABLE attachments (
    id            BIGSERIAL PRIMARY KEY,
    report_id     BIGINT NOT NULL REFERENCES reports(id),
    kind          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    bytes         BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX attachments_report ON attachments(report_id);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    report_id       BIGINT NOT NULL REFERENCES reports(id),
    at              BIGINT NOT NULL,
    author_kind     TEXT NOT NULL,
    author_user_id  BIGINT REFERENCES users(id),
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX messages_report ON messages(report_id);

CREATE TABLE audit_log (
    id           BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    actor_id     BIGINT REFERENCES users(id),
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    entity       TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    before_json  TEXT,
    after_json   TEXT
);
CREATE INDEX audit_entity ON audit_log(entity, entity_id);

CREATE TABLE dead_letters (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    topic     TEXT NOT NULL,
    payload   BYTEA NOT NULL,
    size      BIGINT NOT NULL,
    reason    TEXT NOT NULL
);

CREATE TABLE status_outbox (
    id            BIGSERIAL PRIMARY KEY,
    at            BIGINT NOT NULL,
    topic         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    published_at  BIGINT
);
CREATE INDEX status_outbox_pending ON status_outbox(published_at);
