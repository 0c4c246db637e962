//! The on-disk outbox: every message is committed here before it is published, and deleted
//! only when the broker has acknowledged it (PUBACK).
//!
//! SQLite in WAL mode with `synchronous = FULL`: a commit is on disk (the WAL fsync'd) before
//! `insert` returns, so neither a crash of the process nor a power cut loses a message that was
//! accepted. Row ids come from `AUTOINCREMENT`, so they only ever grow (never reused after a
//! delete): the publisher drains each site's rows in id order and uses ids as its cursor.
//!
//! The lifecycle state (open incidents) lives in the same database and is written in the same
//! transaction as the message it goes with, so after a crash the two always agree: an incident
//! whose `new` is in the outbox is open, and its `seq` continues where the last message left it.
//!
//! Bound: at most `max_messages` rows. When full, the oldest `counts` row (any site) makes room;
//! with no `counts` row left, a new `counts` message is dropped (counted), while an incident is
//! kept anyway, above the bound, and logged: incidents are never dropped silently.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;

use super::lifecycle::{OpenIncident, Persist};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database {path}: {error}")]
    Open { path: PathBuf, error: sqlx::Error },
    #[error("outbox database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox: stored lifecycle state is not valid JSON: {0}")]
    State(#[from] serde_json::Error),
    #[error("outbox database {path} is damaged and cannot be moved aside: {error}")]
    MoveAside {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl OutboxError {
    /// True when SQLite says the file is not a database or is damaged (SQLITE_NOTADB,
    /// SQLITE_CORRUPT and its extended codes).
    pub fn is_corrupt(&self) -> bool {
        let e = match self {
            OutboxError::Open { error, .. } | OutboxError::Db(error) => error,
            _ => return false,
        };
        match e {
            sqlx::Error::Database(d) => d
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 11 | 26)),
            _ => false,
        }
    }
}

/// What a row carries, which decides how the bound treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgKind {
    Incident,
    Counts,
}

impl MsgKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MsgKind::Incident => "incident",
            MsgKind::Counts => "counts",
        }
    }
    fn parse(s: &str) -> MsgKind {
        if s == "counts" {
            MsgKind::Counts
        } else {
            MsgKind::Incident
        }
    }
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub site: String,
    pub kind: MsgKind,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// When the input behind the message reached the service (ms since the epoch): the start
    /// of the publish latency measured at the broker's ack.
    pub created_ms: i64,
    /// Short text for logs, e.g. "bkb-crowd-...-1a2b3c4d new #1".
    pub label: String,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub site: String,
    pub kind: MsgKind,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub created_ms: i64,
    pub label: String,
}

/// What happened to an insert.
#[derive(Clone, Debug, PartialEq)]
pub enum Inserted {
    /// Stored with this id. `evicted` is the (id, site) of an old counts row deleted to make
    /// room; `over_limit` is set when an incident was stored above the bound.
    Stored {
        id: i64,
        evicted: Option<(i64, String)>,
        over_limit: bool,
    },
    /// A counts message dropped because the outbox is full of incidents.
    Dropped,
}

/// Per-site backlog at open.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteBacklog {
    pub site: String,
    pub pending: i64,
    pub max_id: i64,
}

/// The outbox database.
#[derive(Clone)]
pub struct Outbox {
    pool: SqlitePool,
    path: PathBuf,
    max_messages: i64,
    /// Rows stored, all sites (kept in memory so the bound costs no query per insert).
    pending: Arc<AtomicI64>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        label TEXT NOT NULL DEFAULT ''
    )",
    "CREATE INDEX IF NOT EXISTS outbox_site ON outbox(site, id)",
    "CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, id)",
    "CREATE TABLE IF NOT EXISTS open_incidents (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL
    )",
];

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`. A file SQLite finds damaged is moved
    /// aside (`outbox.db.corrupt-<UTC time>`, with its WAL) and a new outbox started, with a
    /// warning naming the kept file: the pipeline runs on; what the old file held is not sent.
    pub async fn open(path: &Path, max_messages: u64) -> Result<Self, OutboxError> {
        match Self::open_checked(path, max_messages).await {
            Err(e) if e.is_corrupt() => {
                let kept = move_aside(path)?;
                tracing::warn!(
                    file = %path.display(),
                    kept = %kept.display(),
                    error = %e,
                    "the outbox database {} is damaged: moved aside to {} and started empty; the messages it held are not sent (inspect them with sqlite3)",
                    path.display(),
                    kept.display()
                );
                Self::open_checked(path, max_messages).await
            }
            other => other,
        }
    }

    /// Opens and reads what start-up reads (row count, backlog, open incidents), so damage
    /// there shows now, not half-way through starting.
    async fn open_checked(path: &Path, max_messages: u64) -> Result<Self, OutboxError> {
        let open_err = |error| OutboxError::Open {
            path: path.to_path_buf(),
            error,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is fsync'd at every commit, so an accepted message survives a
            // power cut, not only a crash of the process.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await.map_err(open_err)?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .map_err(open_err)?
            .try_get(0)
            .map_err(open_err)?;
        let probe = async {
            sqlx::query("SELECT site, COUNT(*), MAX(id) FROM outbox GROUP BY site")
                .fetch_all(&pool)
                .await?;
            sqlx::query("SELECT key, state FROM open_incidents")
                .fetch_all(&pool)
                .await
        };
        if let Err(error) = probe.await {
            pool.close().await;
            return Err(OutboxError::Open {
                path: path.to_path_buf(),
                error,
            });
        }
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            max_messages: i64::try_from(max_messages).unwrap_or(i64::MAX),
            pending: Arc::new(AtomicI64::new(count)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows stored, all sites.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Rows per site with their highest id.
    pub async fn backlog(&self) -> Result<Vec<SiteBacklog>, OutboxError> {
        let rows = sqlx::query("SELECT site, COUNT(*), MAX(id) FROM outbox GROUP BY site")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteBacklog {
                    site: r.try_get(0)?,
                    pending: r.try_get(1)?,
                    max_id: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(OutboxError::from)
    }

    /// Stores a message and applies the lifecycle changes that go with it, in one transaction.
    pub async fn insert(
        &self,
        msg: &NewMessage,
        persist: &[Persist],
    ) -> Result<Inserted, OutboxError> {
        let full = self.pending() >= self.max_messages;
        let mut tx = self.pool.begin().await?;
        let mut evicted = None;
        if full {
            // The first statement writes, so the transaction takes the write lock at once (a
            // read first could make SQLite refuse the later upgrade under concurrent deletes).
            let row = sqlx::query(
                "DELETE FROM outbox WHERE id = \
                 (SELECT id FROM outbox WHERE kind = 'counts' ORDER BY id LIMIT 1) \
                 RETURNING id, site",
            )
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(r) => evicted = Some((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)),
                None if msg.kind == MsgKind::Counts => {
                    tx.rollback().await?;
                    return Ok(Inserted::Dropped);
                }
                None => {}
            }
        }
        let id: i64 = sqlx::query(
            "INSERT INTO outbox (site, kind, topic, payload, retain, created_ms, label) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&msg.site)
        .bind(msg.kind.as_str())
        .bind(&msg.topic)
        .bind(&msg.payload)
        .bind(msg.retain)
        .bind(msg.created_ms)
        .bind(&msg.label)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for p in persist {
            match p {
                Persist::Upsert(inc) => {
                    sqlx::query(
                        "INSERT INTO open_incidents (key, state) VALUES (?, ?) \
                         ON CONFLICT(key) DO UPDATE SET state = excluded.state",
                    )
                    .bind(inc.key.as_db_key())
                    .bind(serde_json::to_string(inc)?)
                    .execute(&mut *tx)
                    .await?;
                }
                Persist::Delete(key) => {
                    sqlx::query("DELETE FROM open_incidents WHERE key = ?")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        let over_limit = full && evicted.is_none();
        if evicted.is_none() {
            self.pending.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Inserted::Stored {
            id,
            evicted,
            over_limit,
        })
    }

    /// The site's rows with `from <= id <= to`, oldest first, at most `limit`.
    pub async fn read_site(
        &self,
        site: &str,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Row>, OutboxError> {
        let rows = sqlx::query(
            "SELECT id, site, kind, topic, payload, retain, created_ms, label FROM outbox \
             WHERE site = ? AND id >= ? AND id <= ? ORDER BY id LIMIT ?",
        )
        .bind(site)
        .bind(from)
        .bind(to)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Row {
                    id: r.try_get(0)?,
                    site: r.try_get(1)?,
                    kind: MsgKind::parse(r.try_get::<&str, _>(2)?),
                    topic: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    retain: r.try_get(5)?,
                    created_ms: r.try_get(6)?,
                    label: r.try_get(7)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(OutboxError::from)
    }

    /// Deletes an acknowledged row. False when it was not there (acked twice, or evicted).
    pub async fn delete(&self, id: i64) -> Result<bool, OutboxError> {
        let n = sqlx::query("DELETE FROM outbox WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n > 0 {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(n > 0)
    }

    /// Incidents open when the process last stopped.
    pub async fn open_incidents(&self) -> Result<Vec<OpenIncident>, OutboxError> {
        let rows = sqlx::query("SELECT state FROM open_incidents ORDER BY key")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let s: &str = r.try_get(0)?;
            out.push(serde_json::from_str(s)?);
        }
        Ok(out)
    }

    /// Makes the local open incidents of `site` exactly `open` (a site adopted from another
    /// cluster node), in one transaction.
    pub async fn replace_site_open(
        &self,
        site: &str,
        open: &[OpenIncident],
    ) -> Result<(), OutboxError> {
        let mut tx = self.pool.begin().await?;
        // Keys are `site|zone|kind`: the prefix names exactly the site's rows.
        sqlx::query("DELETE FROM open_incidents WHERE substr(key, 1, length(?)) = ?")
            .bind(format!("{site}|"))
            .bind(format!("{site}|"))
            .execute(&mut *tx)
            .await?;
        for inc in open.iter().filter(|i| i.key.site == site) {
            sqlx::query("INSERT INTO open_incidents (key, state) VALUES (?, ?)")
                .bind(inc.key.as_db_key())
                .bind(serde_json::to_string(inc)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        // sqlx closes a connection's SQLite handle on its worker thread, after `close` returns:
        // fold the WAL back now so the file is whole when the caller looks at it.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}

/// Renames a damaged database and its WAL to `<name>.corrupt-<UTC time>[-wal]` (the shared
/// memory file is dropped: SQLite rebuilds it). Returns the new name of the database.
fn move_aside(path: &Path) -> Result<PathBuf, OutboxError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "outbox.db".into());
    let kept = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    let err = |error| OutboxError::MoveAside {
        path: path.to_path_buf(),
        error,
    };
    std::fs::rename(path, &kept).map_err(err)?;
    let side = |suffix: &str| path.with_file_name(format!("{name}{suffix}"));
    if side("-wal").exists() {
        std::fs::rename(
            side("-wal"),
            kept.with_file_name(format!("{name}.corrupt-{stamp}-wal")),
        )
        .map_err(err)?;
    }
    let _ = std::fs::remove_file(side("-shm"));
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::lifecycle::IncidentKey;
    use crate::model::IncidentKind;
    use chrono::{TimeZone, Utc};

    fn msg(site: &str, kind: MsgKind, n: u8) -> NewMessage {
        NewMessage {
            site: site.into(),
            kind,
            topic: format!("simpang/v1/sites/{site}/x"),
            payload: vec![n; 3],
            retain: false,
            created_ms: 1000 + n as i64,
            label: format!("m{n}"),
        }
    }

    /// A file that is not a database, and a database whose pages were overwritten: both are
    /// moved aside with their time, and a fresh outbox works.
    #[tokio::test]
    async fn a_damaged_file_is_moved_aside_and_a_new_outbox_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
        let ob = Outbox::open(&path, 100).await.expect("opens anew");
        assert_eq!(ob.pending(), 0);
        ob.insert(&msg("a", MsgKind::Incident, 1), &[])
            .await
            .unwrap();
        ob.close().await;
        let kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("outbox.db.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&kept[0])).unwrap(),
            vec![0x5au8; 8192],
            "kept as it was"
        );

        // A real database, then its pages after the header overwritten.
        let path2 = dir.path().join("second.db");
        let ob = Outbox::open(&path2, 100).await.unwrap();
        for n in 0..50 {
            ob.insert(&msg("a", MsgKind::Counts, n), &[]).await.unwrap();
        }
        ob.close().await;
        let _ = std::fs::remove_file(dir.path().join("second.db-wal"));
        let mut bytes = std::fs::read(&path2).unwrap();
        assert!(bytes.len() > 4096, "more than one page");
        for b in bytes.iter_mut().skip(100) {
            *b = 0xff;
        }
        std::fs::write(&path2, &bytes).unwrap();
        let ob = Outbox::open(&path2, 100).await.expect("opens anew");
        assert_eq!(ob.pending(), 0);
        ob.close().await;
        assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("second.db.corrupt-")));
    }

    fn stored_id(i: &Inserted) -> i64 {
        match i {
            Inserted::Stored { id, .. } => *id,
            Inserted::Dropped => panic!("dropped"),
        }
    }

    #[tokio::test]
    async fn insert_read_delete_in_order_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let ob = Outbox::open(&path, 1000).await.unwrap();
        let a = stored_id(
            &ob.insert(&msg("a", MsgKind::Incident, 1), &[])
                .await
                .unwrap(),
        );
        let b = stored_id(
            &ob.insert(&msg("b", MsgKind::Incident, 2), &[])
                .await
                .unwrap(),
        );
        let c = stored_id(&ob.insert(&msg("a", MsgKind::Counts, 3), &[]).await.unwrap());
        assert!(a < b && b < c);
        assert_eq!(ob.pending(), 3);
        let rows = ob.read_site("a", 0, i64::MAX, 10).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(rows[1].kind, MsgKind::Counts);
        assert_eq!(rows[0].payload, vec![1, 1, 1]);
        assert_eq!(
            ob.read_site("a", a + 1, i64::MAX, 10).await.unwrap().len(),
            1
        );
        assert_eq!(ob.read_site("a", 0, a, 10).await.unwrap().len(), 1);
        assert!(ob.delete(a).await.unwrap());
        assert!(!ob.delete(a).await.unwrap());
        assert_eq!(ob.pending(), 2);
        ob.close().await;

        // Reopened (a restart): the rest is still there, ids keep growing.
        let ob = Outbox::open(&path, 1000).await.unwrap();
        assert_eq!(ob.pending(), 2);
        let mut bl = ob.backlog().await.unwrap();
        bl.sort_by(|x, y| x.site.cmp(&y.site));
        assert_eq!(
            bl,
            vec![
                SiteBacklog {
                    site: "a".into(),
                    pending: 1,
                    max_id: c
                },
                SiteBacklog {
                    site: "b".into(),
                    pending: 1,
                    max_id: b
                },
            ]
        );
        assert!(ob.delete(c).await.unwrap());
        let d = stored_id(
            &ob.insert(&msg("a", MsgKind::Incident, 4), &[])
                .await
                .unwrap(),
        );
        assert!(d > c, "ids are never reused");
    }

    #[tokio::test]
    async fn bound_drops_counts_never_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 3).await.unwrap();
        let c1 = stored_id(&ob.insert(&msg("a", MsgKind::Counts, 1), &[]).await.unwrap());
        ob.insert(&msg("a", MsgKind::Incident, 2), &[])
            .await
            .unwrap();
        ob.insert(&msg("b", MsgKind::Counts, 3), &[]).await.unwrap();
        // Full: a new incident evicts the oldest counts row.
        match ob
            .insert(&msg("a", MsgKind::Incident, 4), &[])
            .await
            .unwrap()
        {
            Inserted::Stored {
                evicted,
                over_limit,
                ..
            } => {
                assert_eq!(evicted, Some((c1, "a".into())));
                assert!(!over_limit, "room was made, nothing is above the bound");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ob.pending(), 3);
        // A new counts message evicts the other counts row.
        ob.insert(&msg("a", MsgKind::Counts, 5), &[]).await.unwrap();
        assert_eq!(ob.pending(), 3);
        // Full of incidents except one counts row: incidents evict it, then go above the bound.
        ob.insert(&msg("a", MsgKind::Incident, 6), &[])
            .await
            .unwrap();
        match ob
            .insert(&msg("a", MsgKind::Incident, 7), &[])
            .await
            .unwrap()
        {
            Inserted::Stored {
                evicted: None,
                over_limit: true,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(ob.pending(), 4);
        // And counts are dropped, not stored.
        assert_eq!(
            ob.insert(&msg("b", MsgKind::Counts, 8), &[]).await.unwrap(),
            Inserted::Dropped
        );
        let all: usize = ob
            .backlog()
            .await
            .unwrap()
            .iter()
            .map(|b| b.pending as usize)
            .sum();
        assert_eq!(all, 4);
        let kinds: Vec<MsgKind> = ob
            .read_site("a", 0, i64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, vec![MsgKind::Incident; 4]);
    }

    #[tokio::test]
    async fn lifecycle_state_goes_with_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 100).await.unwrap();
        let inc = OpenIncident {
            id: "x".into(),
            key: IncidentKey {
                site: "a".into(),
                zone: Some("z".into()),
                kind: IncidentKind::Crowd,
            },
            started_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            seq: 1,
            level: crate::model::Level::Tinggi,
            last_sent_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap(),
            restored_at: None,
        };
        ob.insert(
            &msg("a", MsgKind::Incident, 1),
            &[Persist::Upsert(inc.clone())],
        )
        .await
        .unwrap();
        assert_eq!(ob.open_incidents().await.unwrap(), vec![inc.clone()]);
        let mut next = inc.clone();
        next.seq = 2;
        ob.insert(
            &msg("a", MsgKind::Incident, 2),
            &[Persist::Upsert(next.clone())],
        )
        .await
        .unwrap();
        assert_eq!(ob.open_incidents().await.unwrap(), vec![next]);
        ob.insert(
            &msg("a", MsgKind::Incident, 3),
            &[Persist::Delete(inc.key.as_db_key())],
        )
        .await
        .unwrap();
        assert!(ob.open_incidents().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_adopted_sites_open_incidents_replace_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.db"), 100).await.unwrap();
        let inc = |site: &str, kind: IncidentKind, seq: u32| OpenIncident {
            id: format!("{site}-{}", kind.as_str()),
            key: IncidentKey {
                site: site.into(),
                zone: None,
                kind,
            },
            started_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            seq,
            level: crate::model::Level::Tinggi,
            last_sent_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap(),
            restored_at: None,
        };
        for (site, kind) in [
            ("a", IncidentKind::Crowd),
            ("a", IncidentKind::CameraOffline),
            ("ab", IncidentKind::Crowd),
        ] {
            ob.insert(
                &msg(site, MsgKind::Incident, 1),
                &[Persist::Upsert(inc(site, kind, 1))],
            )
            .await
            .unwrap();
        }
        let adopted = vec![inc("a", IncidentKind::Crowd, 7)];
        ob.replace_site_open("a", &adopted).await.unwrap();
        let mut all = ob.open_incidents().await.unwrap();
        all.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(
            all,
            vec![
                inc("a", IncidentKind::Crowd, 7),
                inc("ab", IncidentKind::Crowd, 1)
            ]
        );
        ob.replace_site_open("a", &[]).await.unwrap();
        assert_eq!(
            ob.open_incidents().await.unwrap(),
            vec![inc("ab", IncidentKind::Crowd, 1)]
        );
    }
}
