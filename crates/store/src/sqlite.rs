use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::keys::{generate_secret, hash_key, hint, ApiKey, KeyStatus, NewApiKey};
use crate::{Error, Store};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_api_keys.sql"),
    include_str!("../migrations/sqlite/0002_secrets.sql"),
];

/// The default store: one SQLite file in WAL mode, so the CLI can change keys while the
/// server runs.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        for (i, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            conn.execute_batch(migration)?;
            conn.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, Error> {
        let conn = self.conn.lock().map_err(|_| Error::Poisoned)?;
        Ok(f(&conn)?)
    }
}

fn row_to_key(row: &rusqlite::Row<'_>) -> Result<ApiKey, rusqlite::Error> {
    let status: String = row.get(4)?;
    Ok(ApiKey {
        id: row.get(0)?,
        name: row.get(1)?,
        workspace: row.get(2)?,
        hint: row.get(3)?,
        status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Inactive),
        created_at: row.get(5)?,
    })
}

const KEY_COLUMNS: &str = "id, name, workspace, hint, status, created_at";

impl Store for SqliteStore {
    fn create_api_key(&self, name: &str, workspace: &str) -> Result<NewApiKey, Error> {
        let secret = generate_secret();
        let key = ApiKey {
            id: format!("apikey_{}", uuid::Uuid::new_v4().simple()),
            name: name.to_owned(),
            workspace: workspace.to_owned(),
            hint: hint(&secret),
            status: KeyStatus::Active,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
        };
        self.with(|conn| {
            conn.execute(
                "INSERT INTO api_keys (id, name, workspace, key_hash, hint, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key.id, key.name, key.workspace, hash_key(&secret), key.hint, key.status.as_str(), key.created_at],
            )
        })?;
        Ok(NewApiKey { key, secret })
    }

    fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
                params![key_hash],
                row_to_key,
            )
            .optional()
        })
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKey>, Error> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
            ))?;
            let keys = stmt
                .query_map([], row_to_key)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(keys)
        })
    }

    fn set_api_key_status(&self, id: &str, status: KeyStatus) -> Result<(), Error> {
        let changed = self.with(|conn| {
            conn.execute(
                "UPDATE api_keys SET status = ?1 WHERE id = ?2",
                params![status.as_str(), id],
            )
        })?;
        if changed == 0 {
            return Err(Error::KeyNotFound(id.to_owned()));
        }
        Ok(())
    }

    fn secret(&self, name: &str, len: usize) -> Result<Vec<u8>, Error> {
        let fresh: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        self.with(|conn| {
            // First writer wins; every later caller (and restart) reads the same value.
            conn.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, fresh],
            )?;
            conn.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_is_found_by_hash_and_revocation_sticks_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missive.db");
        let store = SqliteStore::open(&path).unwrap();
        let new = store.create_api_key("ci", "default").unwrap();
        assert!(new.secret.starts_with("sk-ant-api03-"));
        let found = store.find_api_key(&hash_key(&new.secret)).unwrap().unwrap();
        assert_eq!(found.id, new.key.id);
        store
            .set_api_key_status(&new.key.id, KeyStatus::Inactive)
            .unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let found = reopened
            .find_api_key(&hash_key(&new.secret))
            .unwrap()
            .unwrap();
        assert_eq!(found.status, KeyStatus::Inactive);
        assert!(reopened
            .find_api_key(&hash_key("sk-ant-api03-wrong"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_secret_is_created_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missive.db");
        let first = SqliteStore::open(&path).unwrap().secret("s", 32).unwrap();
        assert_eq!(first.len(), 32);
        let again = SqliteStore::open(&path).unwrap().secret("s", 32).unwrap();
        assert_eq!(first, again);
        assert_ne!(
            first,
            SqliteStore::open(&path).unwrap().secret("t", 32).unwrap()
        );
    }
}
