//! Why a desk operation did not happen. Each kind maps to one HTTP status in the web layer
//! (`web::status_of`), and its text is what a person reads (Indonesian).

use serde::Serialize;

use super::auth::{HashError, KeyError};
use super::domain::NotAllowed;
use super::store::StoreError;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("tidak ditemukan")]
    NotFound,
    #[error("Anda tidak berwenang melakukan ini")]
    Forbidden,
    #[error("silakan masuk terlebih dahulu")]
    Unauthorized,
    #[error("{}", .0.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("berkas terlalu besar (maksimal {max} byte)")]
    TooLarge { max: usize },
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("laporan baru saja diubah orang lain; muat ulang halaman lalu coba lagi")]
    Conflict,
    #[error("terlalu banyak percobaan gagal; coba lagi dalam {0} detik")]
    RateLimited(i64),
    /// Too many requests from one client or phone (not failures: a rate).
    #[error("terlalu banyak permintaan; coba lagi dalam {0} detik")]
    TooMany(i64),
    /// Every password checker is busy: try again shortly (nothing was checked).
    #[error("server sedang sibuk; coba lagi sebentar lagi")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(HashError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("kesalahan internal: {0}")]
    Internal(String),
    /// `simpang demo` pointed at a real desk's database.
    #[error(
        "the desk database has {accounts} staff account(s) that `simpang demo` did not create: \
         it belongs to a real desk, and the demo leaves its accounts alone. Give the demo its own \
         data (a config with another `data_dir`, or `[desk] database`)"
    )]
    NotDemoDatabase { accounts: usize },
}

impl From<HashError> for DeskError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => DeskError::Busy,
            other => DeskError::Auth(other),
        }
    }
}

impl From<sqlx::Error> for DeskError {
    fn from(e: sqlx::Error) -> Self {
        DeskError::Store(StoreError::Db(e))
    }
}

/// One bad input field, named as the form and the JSON API name it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// `Invalid` with one field's message.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> DeskError {
    DeskError::Invalid(vec![FieldError {
        field,
        message: message.into(),
    }])
}
