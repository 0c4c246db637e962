//! Storage: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Why `Any` rather than code generic over `Database`: every query here is written once, with
//! `$N` placeholders (which SQLite also understands), and the backend is picked at run time by
//! the URL, so a deployment moves from the default SQLite file to a PostgreSQL server without a
//! rebuild. The price is `Any`'s small type set (integers, floats, text, bytes): times are Unix
//! seconds in `BIGINT`/`INTEGER` columns and JSON is text. DDL differs in a few type names, so
//! each backend has its own migration folder (`migrations/desk/{sqlite,postgres}`) with the same
//! tables and columns.
//!
//! One file per table (or aggregate): [`reports`], [`attachments`], [`messages`], [`audit`],
//! [`users`], [`sessions`], [`dead_letters`], [`outbox`]. Each holds the row type and the
//! queries on it as plain functions taking a connection (or an open transaction), so the
//! services decide what goes into one transaction. Their items are re-exported here:
//! `store::report_by_ticket`, `store::insert_audit`, ...

pub mod attachments;
pub mod audit;
pub mod dead_letters;
pub mod messages;
pub mod outbox;
pub mod reports;
pub mod sessions;
pub mod users;

pub use attachments::*;
pub use audit::*;
pub use dead_letters::*;
pub use messages::*;
pub use outbox::*;
pub use reports::*;
pub use sessions::*;
pub use users::*;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Arguments, ConnectOptions, Transaction};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/desk/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/desk/postgres");

/// Why the database did not do what was asked.
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

/// Which database server is behind the URL.
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
    /// As opened: the PostgreSQL change listener ([`crate::desk::peers`]) needs a connection
    /// of its own, outside the pool.
    url: String,
}

/// An open write transaction (see [`Store::begin`]); derefs to a connection, so every query
/// function here takes either.
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
                        // FULL: the WAL is fsync'd at every commit. The desk acknowledges an
                        // incident to the broker right after its commit, and the broker then
                        // forgets it: with NORMAL a power cut could lose that commit.
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        // The same promise on PostgreSQL: a commit returns once it is flushed
                        // to the WAL on disk, whatever the server's default says.
                        sqlx::query("SET synchronous_commit = on")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let store = Store {
            pool,
            backend,
            url: url.clone(),
        };
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

    pub(crate) fn url(&self) -> &str {
        &self.url
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

/// A query text with `$N` placeholders built alongside its arguments, for filters whose shape
/// depends on the request (sqlx's QueryBuilder writes `?` for `Any`, which PostgreSQL rejects).
#[derive(Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

/// One bound value of a [`Sql`] query.
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
