//! What only the SQLite store does: its migrations from older files. Everything a store
//! promises is in `tests/contract`, run over every store.

use super::*;

#[test]
fn an_existing_store_migrates_workspace_names_to_workspaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missive.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO api_keys (id, name, workspace, key_hash, hint, status, created_at) VALUES ('apikey_old', 'old', 'research', 'h', 'hint', 'active', 1)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let key = store.find_api_key("h").unwrap().unwrap();
    assert_eq!(key.workspace_name.as_deref(), Some("research"));
    let ws = store.workspace_by_name("research").unwrap().unwrap();
    assert_eq!(key.workspace_id.as_deref(), Some(ws.id.as_str()));
}
