//! Reading a config file: TOML shape errors and meaning problems, each located by file, line,
//! column and field path.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{self, line_col, Locator};
use super::Config;
use crate::time::Timezone;

/// One problem found in a config file, located.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl Problem {
    /// A TOML parse error of `text` (read from `file`) as a problem at its line, column and
    /// field. Where the text is too broken to have a document, the field comes from the
    /// nearest table header and key before the error.
    pub fn from_toml(text: &str, file: &Path, locator: &Locator, e: &toml::de::Error) -> Problem {
        let (line, column, field) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                let mut path = locator.path_at(span.start);
                if path.0.is_empty() {
                    path = locate::path_in_broken_text(text, span.start);
                }
                (l, c, path.to_string())
            }
            None => (1, 1, "(top level)".into()),
        };
        Problem {
            file: file.to_path_buf(),
            line,
            column,
            field,
            message: e.message().trim().to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: field `{}`: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the reason belongs in this message, and a source would print it
    // twice in anyhow's `{:#}` chain.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_str_at(&text, path)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let locator = Locator::new(text);
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            problems: vec![Problem::from_toml(text, path, &locator, &e)],
        })?;
        cfg.source = Some(path.to_path_buf());
        cfg.mqtt.adopt_brokers();
        cfg.desk.mqtt.adopt_brokers();
        let issues = cfg.validate();
        if issues.is_empty() {
            // validate() has checked the name; this is the one place it becomes a zone.
            if let Ok(tz) = Timezone::parse(&cfg.city.timezone) {
                cfg.city.tz = tz;
            }
            return Ok(cfg);
        }
        let problems = issues
            .into_iter()
            .map(|(field, message)| {
                let (line, column) = locator
                    .span_of(&field)
                    .map(|s| line_col(text, s.start))
                    .unwrap_or((1, 1));
                Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    field: field.to_string(),
                    message,
                }
            })
            .collect();
        Err(ConfigError::Invalid { problems })
    }
}
