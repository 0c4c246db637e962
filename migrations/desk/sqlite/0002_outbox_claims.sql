-- Several desks on one database: a status message is claimed by one instance before it is
-- published (claimed_by, until claimed_until, seconds since the epoch), so no two publish it.
ALTER TABLE status_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE status_outbox ADD COLUMN claimed_until BIGINT;
CREATE INDEX status_outbox_topic ON status_outbox(topic, id);
