//! Durable state behind one [`Store`] trait. SQLite (WAL) under the data directory is the
//! default; the trait leaves room for Postgres. Knows nothing of HTTP or the wire format:
//! the server converts between these types and the Claude API's.

mod keys;
mod sqlite;

pub use keys::{hash_key, ApiKey, KeyStatus, NewApiKey};
pub use sqlite::SqliteStore;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no API key with id {0}")]
    KeyNotFound(String),
    #[error("the store's lock was poisoned by a panic")]
    Poisoned,
}

/// Everything Missive keeps across restarts.
pub trait Store: Send + Sync {
    /// Creates a key; the secret is returned once and only its hash is stored.
    fn create_api_key(&self, name: &str, workspace: &str) -> Result<NewApiKey, Error>;
    /// The key whose secret hashes to `key_hash`, whatever its status.
    fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error>;
    fn list_api_keys(&self) -> Result<Vec<ApiKey>, Error>;
    fn set_api_key_status(&self, id: &str, status: KeyStatus) -> Result<(), Error>;
    /// The named secret, created (`len` random bytes) on first use and kept thereafter.
    fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error>;
}
