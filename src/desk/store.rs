//! Storage: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Why `Any` rather than code generic over `Database`: every query here is written once, with
//! `$N` placeholders (which SQLite also understands), and the backend is picked at run time by
//! the URL, so a deployment moves from the default SQLite file to a PostgreSQL server without a
//! rebuild. The price is `Any`'s small type set (integers, floats, text, bytes): times are Unix
//! seconds in `BIGINT`/`INTEGER` columns and JSON is text. DDL differs in a few type names, so
//! each backend has its own migration folder (`migrations/desk/{sqlite,postgres}`) with the same
//! tables and columns.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Arguments, ConnectOptions, Row, Transaction};

use super::domain::{Role, Source, Status};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/desk/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/desk/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?} (use sqlite://PATH or postgres://...)")]
    Url(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("stored value is damaged: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The desk database: a pool and which backend is behind it.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

pub type Tx = Transaction<'static, Any>;

impl Store {
    /// Opens (creating a SQLite file and its folder if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.into()));
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = sqlite_path(&url);
            if let Some(dir) = Path::new(&path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') { "&" } else { "?" });
                url.push_str("mode=rwc");
            }
        }
        let opts = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per connection: wait for the writer instead of failing, and enforce the
                        // REFERENCES clauses (SQLite does not by default).
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let store = Store { pool, backend };
        if backend == Backend::Sqlite {
            // WAL is a property of the file: readers never block the writer. Set once.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&store.pool)
                .await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&store.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&store.pool).await?,
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// two writers queue on the busy timeout instead of one failing half-way; on PostgreSQL
    /// updates are guarded by the row's `version` instead.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The file path inside a `sqlite:` URL.
fn sqlite_path(url: &str) -> String {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split('?').next().unwrap_or_default().to_string()
}

/// `s` with LIKE's wildcards and the escape character itself escaped by `\`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A query text with `$N` placeholders built alongside its arguments, for filters whose shape
/// depends on the request (sqlx's QueryBuilder writes `?` for `Any`, which PostgreSQL rejects).
#[derive(Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub enum Arg {
    Int(i64),
    Text(String),
}

impl Sql {
    pub fn new(s: &str) -> Self {
        Self {
            text: s.into(),
            args: Vec::new(),
        }
    }
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    pub fn bind(&mut self, a: Arg) -> &mut Self {
        self.args.push(a);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut args = AnyArguments::default();
        for a in &self.args {
            // Adding an owned i64 or String to AnyArguments cannot fail.
            let _ = match a {
                Arg::Int(i) => args.add(*i),
                Arg::Text(s) => args.add(s.clone()),
            };
        }
        sqlx::query_with(&self.text, args)
    }
}

// ----------------------------------------------------------------------------------------------
// Reports

/// One row of `reports`.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    pub ticket: String,
    pub source: String,
    pub status: String,
    pub category_id: String,
    pub title: String,
    pub description: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(skip)]
    pub phone: Option<String>,
    #[serde(skip)]
    pub pin_hash: Option<String>,
    pub agency_id: Option<String>,
    pub operator_id: Option<i64>,
    pub officer_id: Option<i64>,
    pub merged_into: Option<i64>,
    pub reject_reason: Option<String>,
    pub incident_id: Option<String>,
    pub incident_seq: Option<i64>,
    pub incident_kind: Option<String>,
    pub level: Option<String>,
    pub site_id: Option<String>,
    pub site_name: Option<String>,
    pub camera: Option<String>,
    pub evidence: Option<String>,
    pub incident_started_at: Option<i64>,
    pub cleared_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub verified_at: Option<i64>,
    pub dispositioned_at: Option<i64>,
    pub due_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub closed_at: Option<i64>,
    #[serde(skip)]
    pub version: i64,
}

impl ReportRow {
    pub fn status(&self) -> Result<Status, StoreError> {
        self.status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("report {}: {e}", self.ticket)))
    }
    pub fn source(&self) -> Result<Source, StoreError> {
        self.source
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("report {}: {e}", self.ticket)))
    }
}

const REPORT_COLUMNS: &str = "id, ticket, source, status, category_id, title, description, \
    address, lat, lon, phone, pin_hash, agency_id, operator_id, officer_id, merged_into, \
    reject_reason, incident_id, incident_seq, incident_kind, level, site_id, site_name, camera, \
    evidence, incident_started_at, cleared_at, created_at, updated_at, verified_at, \
    dispositioned_at, due_at, answered_at, closed_at, version";

pub async fn insert_report(c: &mut AnyConnection, r: &ReportRow) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO reports (ticket, source, status, category_id, title, description, address, \
         lat, lon, phone, pin_hash, agency_id, incident_id, incident_seq, incident_kind, level, \
         site_id, site_name, camera, evidence, incident_started_at, cleared_at, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24) RETURNING id",
    )
    .bind(&r.ticket)
    .bind(&r.source)
    .bind(&r.status)
    .bind(&r.category_id)
    .bind(&r.title)
    .bind(&r.description)
    .bind(&r.address)
    .bind(r.lat)
    .bind(r.lon)
    .bind(&r.phone)
    .bind(&r.pin_hash)
    .bind(&r.agency_id)
    .bind(&r.incident_id)
    .bind(r.incident_seq)
    .bind(&r.incident_kind)
    .bind(&r.level)
    .bind(&r.site_id)
    .bind(&r.site_name)
    .bind(&r.camera)
    .bind(&r.evidence)
    .bind(r.incident_started_at)
    .bind(r.cleared_at)
    .bind(r.created_at)
    .bind(r.updated_at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Writes every mutable column if the row still has `version`; false when someone else
/// changed it first.
pub async fn update_report(c: &mut AnyConnection, r: &ReportRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE reports SET status = $1, category_id = $2, title = $3, description = $4, \
         address = $5, lat = $6, lon = $7, agency_id = $8, operator_id = $9, officer_id = $10, \
         merged_into = $11, reject_reason = $12, incident_seq = $13, level = $14, evidence = $15, \
         cleared_at = $16, updated_at = $17, verified_at = $18, dispositioned_at = $19, \
         due_at = $20, answered_at = $21, closed_at = $22, version = version + 1 \
         WHERE id = $23 AND version = $24",
    )
    .bind(&r.status)
    .bind(&r.category_id)
    .bind(&r.title)
    .bind(&r.description)
    .bind(&r.address)
    .bind(r.lat)
    .bind(r.lon)
    .bind(&r.agency_id)
    .bind(r.operator_id)
    .bind(r.officer_id)
    .bind(r.merged_into)
    .bind(&r.reject_reason)
    .bind(r.incident_seq)
    .bind(&r.level)
    .bind(&r.evidence)
    .bind(r.cleared_at)
    .bind(r.updated_at)
    .bind(r.verified_at)
    .bind(r.dispositioned_at)
    .bind(r.due_at)
    .bind(r.answered_at)
    .bind(r.closed_at)
    .bind(r.id)
    .bind(r.version)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn report_by_ticket(
    c: &mut AnyConnection,
    ticket: &str,
) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE ticket = $1"
    ))
    .bind(ticket)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn report_by_id(c: &mut AnyConnection, id: i64) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn report_by_incident(
    c: &mut AnyConnection,
    incident_id: &str,
) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE incident_id = $1"
    ))
    .bind(incident_id)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn ticket_exists(c: &mut AnyConnection, ticket: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE ticket = $1")
        .bind(ticket)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

/// Reports merged into `id`.
pub async fn merged_into(c: &mut AnyConnection, id: i64) -> Result<Vec<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE merged_into = $1 ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&mut *c)
    .await?)
}

/// Which reports a listing shows.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub statuses: Vec<Status>,
    pub category: Option<String>,
    pub agency: Option<String>,
    pub source: Option<Source>,
    /// Words in the ticket, title, description or address.
    pub q: Option<String>,
    /// Only those past their SLA due time (needs `now`).
    pub overdue_at: Option<i64>,
    pub created_since: Option<i64>,
    /// Restricts to reports an agency has been sent (agency officers' view).
    pub scope_agency: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

fn apply_filter(sql: &mut Sql, f: &ReportFilter) {
    sql.push(" WHERE 1 = 1");
    if !f.statuses.is_empty() {
        sql.push(" AND status IN (");
        for (i, s) in f.statuses.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(s.as_str().into()));
        }
        sql.push(")");
    }
    if let Some(c) = &f.category {
        sql.push(" AND category_id = ").bind(Arg::Text(c.clone()));
    }
    if let Some(a) = &f.agency {
        sql.push(" AND agency_id = ").bind(Arg::Text(a.clone()));
    }
    if let Some(a) = &f.scope_agency {
        sql.push(" AND agency_id = ")
            .bind(Arg::Text(a.clone()))
            .push(" AND status IN ('dispositioned', 'answered', 'reopened', 'done')");
    }
    if let Some(s) = f.source {
        sql.push(" AND source = ")
            .bind(Arg::Text(s.as_str().into()));
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // The words are matched literally: '%' and '_' typed by a person are not wildcards.
        let like = format!("%{}%", escape_like(&q.to_lowercase()));
        sql.push(" AND (");
        for (i, col) in ["ticket", "title", "description", "address"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("LOWER({col}) LIKE "))
                .bind(Arg::Text(like.clone()))
                .push(" ESCAPE '\\'");
        }
        sql.push(")");
    }
    if let Some(now) = f.overdue_at {
        sql.push(" AND status IN ('dispositioned', 'reopened') AND due_at < ")
            .bind(Arg::Int(now));
    }
    if let Some(t) = f.created_since {
        sql.push(" AND created_at >= ").bind(Arg::Int(t));
    }
}

pub async fn list_reports(
    c: &mut AnyConnection,
    f: &ReportFilter,
) -> Result<(Vec<ReportRow>, i64), StoreError> {
    let mut count = Sql::new("SELECT COUNT(*) FROM reports");
    apply_filter(&mut count, f);
    let total: i64 = count.query().fetch_one(&mut *c).await?.try_get(0)?;
    let mut sql = Sql::new(&format!("SELECT {REPORT_COLUMNS} FROM reports"));
    apply_filter(&mut sql, f);
    if f.overdue_at.is_some() {
        sql.push(" ORDER BY due_at ASC, id ASC");
    } else {
        sql.push(" ORDER BY created_at DESC, id DESC");
    }
    sql.push(" LIMIT ")
        .bind(Arg::Int(f.limit.clamp(1, 500)))
        .push(" OFFSET ")
        .bind(Arg::Int(f.offset.max(0)));
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<ReportRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok((out, total))
}

/// One group of the dashboard aggregate.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StatRow {
    pub category_id: String,
    pub agency_id: Option<String>,
    pub status: String,
    pub n: i64,
    pub overdue: i64,
    pub on_time: i64,
    pub answered: i64,
}

pub async fn stats(
    c: &mut AnyConnection,
    now: i64,
    scope_agency: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<StatRow>, StoreError> {
    let mut sql = Sql::new(
        "SELECT category_id, agency_id, status, COUNT(*) AS n, \
         COUNT(CASE WHEN status IN ('dispositioned', 'reopened') AND due_at < ",
    );
    sql.bind(Arg::Int(now)).push(
        " THEN 1 END) AS overdue, \
         COUNT(CASE WHEN answered_at IS NOT NULL AND due_at IS NOT NULL AND answered_at <= due_at \
         THEN 1 END) AS on_time, \
         COUNT(CASE WHEN answered_at IS NOT NULL THEN 1 END) AS answered \
         FROM reports WHERE 1 = 1",
    );
    if let Some(a) = scope_agency {
        sql.push(" AND agency_id = ")
            .bind(Arg::Text(a.into()))
            .push(" AND status IN ('dispositioned', 'answered', 'reopened', 'done')");
    }
    if let Some(t) = since {
        sql.push(" AND created_at >= ").bind(Arg::Int(t));
    }
    sql.push(" GROUP BY category_id, agency_id, status");
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<StatRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok(out)
}

/// Open reports a user is in charge of, as operator or as agency officer.
pub async fn open_items_of(
    c: &mut AnyConnection,
    user_id: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE (operator_id = $1 OR officer_id = $1) \
         AND status NOT IN ('done', 'rejected', 'merged') ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(&mut *c)
    .await?)
}

// ----------------------------------------------------------------------------------------------
// Attachments

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AttachmentMeta {
    pub id: i64,
    pub report_id: i64,
    pub kind: String,
    pub content_type: String,
    pub sha256: String,
    pub width: i64,
    pub height: i64,
    pub created_at: i64,
}

pub struct NewAttachment<'a> {
    pub report_id: i64,
    pub kind: &'a str,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: &'a [u8],
    pub at: i64,
}

pub async fn insert_attachment(
    c: &mut AnyConnection,
    a: &NewAttachment<'_>,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO attachments (report_id, kind, content_type, sha256, width, height, bytes, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(a.report_id)
    .bind(a.kind)
    .bind(a.content_type)
    .bind(a.sha256)
    .bind(i64::from(a.width))
    .bind(i64::from(a.height))
    .bind(a.bytes.to_vec())
    .bind(a.at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn attachments_of(
    c: &mut AnyConnection,
    report_id: i64,
) -> Result<Vec<AttachmentMeta>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, report_id, kind, content_type, sha256, width, height, created_at \
         FROM attachments WHERE report_id = $1 ORDER BY id",
    )
    .bind(report_id)
    .fetch_all(&mut *c)
    .await?)
}

pub async fn attachment_bytes(
    c: &mut AnyConnection,
    id: i64,
) -> Result<Option<(AttachmentMeta, Vec<u8>)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, report_id, kind, content_type, sha256, width, height, created_at, bytes \
         FROM attachments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let meta = <AttachmentMeta as sqlx::FromRow<_>>::from_row(&row)?;
    let bytes: Vec<u8> = row.try_get("bytes")?;
    Ok(Some((meta, bytes)))
}

/// Keeps the first snapshot of a camera report (how it began) and drops the later ones, before
/// the newest is added: two pictures per incident however long it lasts.
pub async fn prune_snapshots(c: &mut AnyConnection, report_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM attachments WHERE report_id = $1 AND kind = 'snapshot' AND id > \
         (SELECT MIN(id) FROM attachments WHERE report_id = $1 AND kind = 'snapshot')",
    )
    .bind(report_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Newest snapshot of each of the latest camera reports, for the live feed.
pub async fn latest_cctv(
    c: &mut AnyConnection,
    limit: i64,
    scope_agency: Option<&str>,
) -> Result<Vec<(ReportRow, Option<i64>)>, StoreError> {
    let mut f = ReportFilter {
        source: Some(Source::Cctv),
        limit,
        ..Default::default()
    };
    f.scope_agency = scope_agency.map(str::to_string);
    let (rows, _) = list_reports(c, &f).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let snap: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(id) FROM attachments WHERE report_id = $1 AND kind = 'snapshot'",
        )
        .bind(r.id)
        .fetch_one(&mut *c)
        .await?;
        out.push((r, snap));
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------
// Messages (the report's thread)

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub report_id: i64,
    pub at: i64,
    /// `reporter`, `operator`, `agency`, `system`.
    pub author_kind: String,
    #[serde(skip)]
    pub author_user_id: Option<i64>,
    /// `answer`, `chat`, `note` (staff only), `system`.
    pub kind: String,
    pub body: String,
    /// Display name of the staff author, joined in.
    #[serde(skip)]
    pub author_name: Option<String>,
    #[serde(skip)]
    pub author_agency: Option<String>,
}

pub async fn insert_message(
    c: &mut AnyConnection,
    report_id: i64,
    at: i64,
    author_kind: &str,
    author_user_id: Option<i64>,
    kind: &str,
    body: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO messages (report_id, at, author_kind, author_user_id, kind, body) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(report_id)
    .bind(at)
    .bind(author_kind)
    .bind(author_user_id)
    .bind(kind)
    .bind(body)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn messages_of(
    c: &mut AnyConnection,
    report_id: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.report_id, m.at, m.author_kind, m.author_user_id, m.kind, m.body, \
         u.display_name AS author_name, u.agency_id AS author_agency \
         FROM messages m LEFT JOIN users u ON u.id = m.author_user_id \
         WHERE m.report_id = $1 ORDER BY m.at, m.id",
    )
    .bind(report_id)
    .fetch_all(&mut *c)
    .await?)
}

// ----------------------------------------------------------------------------------------------
// Audit log

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_audit(
    c: &mut AnyConnection,
    at: i64,
    actor_id: Option<i64>,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: &str,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor, action, entity, entity_id, before_json, \
         after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(actor_id)
    .bind(actor)
    .bind(action)
    .bind(entity)
    .bind(entity_id)
    .bind(before)
    .bind(after)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn audit_list(
    c: &mut AnyConnection,
    entity: Option<(&str, &str)>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut sql = Sql::new(
        "SELECT id, at, actor_id, actor, action, entity, entity_id, before_json, after_json \
         FROM audit_log",
    );
    if let Some((e, id)) = entity {
        sql.push(" WHERE entity = ")
            .bind(Arg::Text(e.into()))
            .push(" AND entity_id = ")
            .bind(Arg::Text(id.into()));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(Arg::Int(limit.clamp(1, 1000)))
        .push(" OFFSET ")
        .bind(Arg::Int(offset.max(0)));
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<AuditRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------
// Dead letters and the status outbox

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetterRow {
    pub id: i64,
    pub at: i64,
    pub topic: String,
    pub size: i64,
    pub reason: String,
    /// The first bytes of the payload, as text (lossy), for the operator's eye.
    pub preview: String,
}

pub async fn insert_dead_letter(
    c: &mut AnyConnection,
    at: i64,
    topic: &str,
    payload: &[u8],
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dead_letters (at, topic, payload, size, reason) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(topic)
    .bind(payload.to_vec())
    .bind(payload.len() as i64)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn dead_letters(
    c: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, topic, size, reason, payload FROM dead_letters ORDER BY id DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let payload: Vec<u8> = r.try_get("payload")?;
        let head = &payload[..payload.len().min(300)];
        out.push(DeadLetterRow {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            topic: r.try_get("topic")?,
            size: r.try_get("size")?,
            reason: r.try_get("reason")?,
            preview: String::from_utf8_lossy(head).into_owned(),
        });
    }
    Ok(out)
}

pub async fn insert_outbox(
    c: &mut AnyConnection,
    at: i64,
    topic: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO status_outbox (at, topic, payload) VALUES ($1, $2, $3)")
        .bind(at)
        .bind(topic)
        .bind(payload)
        .execute(&mut *c)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub topic: String,
    pub payload: String,
}

pub async fn outbox_pending(
    pool: &AnyPool,
    after_id: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, topic, payload FROM status_outbox WHERE published_at IS NULL AND id > $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Drops published status messages older than `before` (they have served their purpose).
pub async fn outbox_prune(pool: &AnyPool, before: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM status_outbox WHERE published_at IS NOT NULL AND published_at < $1",
    )
    .bind(before)
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn outbox_done(pool: &AnyPool, id: i64, at: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE status_outbox SET published_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Users and sessions

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub agency_id: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub active: i64,
    pub created_at: i64,
    pub deactivated_at: Option<i64>,
}

impl UserRow {
    pub fn role(&self) -> Result<Role, StoreError> {
        self.role
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("user {}: {e}", self.username)))
    }
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, agency_id, password_hash, active, created_at, deactivated_at";

pub async fn insert_user(
    c: &mut AnyConnection,
    username: &str,
    display_name: &str,
    role: Role,
    agency_id: Option<&str>,
    password_hash: &str,
    at: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO users (username, display_name, role, agency_id, password_hash, active, \
         created_at) VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING id",
    )
    .bind(username)
    .bind(display_name)
    .bind(role.as_str())
    .bind(agency_id)
    .bind(password_hash)
    .bind(at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn user_by_name(
    c: &mut AnyConnection,
    username: &str,
) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn user_by_id(c: &mut AnyConnection, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?,
    )
}

pub async fn users(c: &mut AnyConnection) -> Result<Vec<UserRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY active DESC, role, username"
    ))
    .fetch_all(&mut *c)
    .await?)
}

/// Every account's id and display name (a small table), for naming people in the audit trail.
pub async fn user_names(c: &mut AnyConnection) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(sqlx::query_as("SELECT id, display_name FROM users")
        .fetch_all(&mut *c)
        .await?)
}

pub async fn set_user_password(
    c: &mut AnyConnection,
    id: i64,
    hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn set_user_active(
    c: &mut AnyConnection,
    id: i64,
    active: bool,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET active = $1, deactivated_at = $2 WHERE id = $3")
        .bind(i64::from(active))
        .bind(if active { None } else { Some(at) })
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn insert_session(
    c: &mut AnyConnection,
    token_hash: &str,
    user_id: i64,
    csrf: &str,
    at: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(csrf)
    .bind(at)
    .bind(expires_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The live session with this token hash and its (active) user.
pub async fn session(
    c: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<(UserRow, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT u.id, u.username, u.display_name, u.role, u.agency_id, u.password_hash, \
         u.active, u.created_at, u.deactivated_at, s.csrf FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active = 1",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user = <UserRow as sqlx::FromRow<_>>::from_row(&row)?;
    let csrf: String = row.try_get("csrf")?;
    Ok(Some((user, csrf)))
}

pub async fn delete_session(c: &mut AnyConnection, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_sessions_of(c: &mut AnyConnection, user_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn purge_sessions(c: &mut AnyConnection, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        let cases = [
            ("sqlite://data/desk.db", "data/desk.db"),
            ("sqlite:///abs/desk.db?mode=rwc", "/abs/desk.db"),
            ("sqlite:desk.db", "desk.db"),
            ("sqlite://", ""),
        ];
        for (url, want) in cases {
            assert_eq!(sqlite_path(url), want, "{url}");
        }
    }

    #[test]
    fn like_escapes() {
        let cases = [
            ("", ""),
            ("jalan", "jalan"),
            ("100%", "100\\%"),
            ("a_b", "a\\_b"),
            ("c:\\x", "c:\\\\x"),
            ("' OR 1=1 --", "' OR 1=1 --"),
        ];
        for (s, want) in cases {
            assert_eq!(escape_like(s), want, "{s:?}");
        }
    }

    #[test]
    fn builder_numbers_placeholders() {
        let mut s = Sql::new("SELECT 1 WHERE a = ");
        s.bind(Arg::Int(1))
            .push(" AND b = ")
            .bind(Arg::Text("x".into()));
        assert_eq!(s.text, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(s.args.len(), 2);
    }

    #[tokio::test]
    async fn bad_url_is_refused() {
        assert!(matches!(
            Store::open("mysql://x").await,
            Err(StoreError::Url(_))
        ));
    }
}
