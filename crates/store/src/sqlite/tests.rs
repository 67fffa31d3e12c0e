use super::*;
use crate::{hash_key, Dimension, TokenCounts, DEFAULT_WORKSPACE_ID};

fn open() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missive.db");
    let store = SqliteStore::open(&path).unwrap();
    (dir, path, store)
}

#[test]
fn created_key_is_found_by_hash_and_revocation_sticks_across_reopen() {
    let (_dir, path, store) = open();
    let new = store.create_api_key("ci", KeyKind::Standard, None).unwrap();
    assert!(new.secret.starts_with("sk-ant-api03-"));
    let found = store.find_api_key(&hash_key(&new.secret)).unwrap().unwrap();
    assert_eq!(found.id, new.key.id);
    assert_eq!(found.workspace_id.as_deref(), Some(DEFAULT_WORKSPACE_ID));
    assert_eq!(found.workspace_name.as_deref(), Some("default"));
    store
        .update_api_key(&new.key.id, None, Some(KeyStatus::Inactive))
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
fn admin_keys_have_their_own_prefix_and_no_workspace() {
    let (_dir, _path, store) = open();
    let admin = store.create_api_key("ops", KeyKind::Admin, None).unwrap();
    assert!(admin.secret.starts_with("sk-ant-admin01-"));
    assert_eq!(admin.key.kind, KeyKind::Admin);
    assert_eq!(admin.key.workspace_id, None);
}

#[test]
fn archiving_a_workspace_archives_its_keys_and_they_stay_archived() {
    let (_dir, _path, store) = open();
    let ws = store.create_workspace("team-a").unwrap();
    assert!(matches!(
        store.create_workspace("team-a"),
        Err(Error::Conflict(_))
    ));
    let key = store
        .create_api_key("k", KeyKind::Standard, Some(&ws.id))
        .unwrap();
    let archived = store.archive_workspace(&ws.id).unwrap();
    assert!(archived.archived_at.is_some());
    let key = store.api_key(&key.key.id).unwrap().unwrap();
    assert_eq!(key.status, KeyStatus::Archived);
    assert!(matches!(
        store.update_api_key(&key.id, None, Some(KeyStatus::Active)),
        Err(Error::Conflict(_))
    ));
    assert!(store
        .list_workspaces(false)
        .unwrap()
        .iter()
        .all(|w| w.id != ws.id));
    assert!(store
        .list_workspaces(true)
        .unwrap()
        .iter()
        .any(|w| w.id == ws.id));
    assert!(store.archive_workspace(DEFAULT_WORKSPACE_ID).is_err());
}

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

#[test]
fn users_and_members_keep_their_roles() {
    let (_dir, _path, store) = open();
    let user = store
        .add_user("ada@example.com", "Ada", "developer")
        .unwrap();
    assert!(matches!(
        store.add_user("ada@example.com", "Ada", "user"),
        Err(Error::Conflict(_))
    ));
    let ws = store.create_workspace("ml").unwrap();
    store
        .add_member(&ws.id, &user.id, "workspace_developer")
        .unwrap();
    let member = store
        .set_member_role(&ws.id, &user.id, "workspace_admin")
        .unwrap();
    assert_eq!(member.workspace_role, "workspace_admin");
    assert_eq!(store.list_members(&ws.id).unwrap().len(), 1);
    store.remove_user(&user.id).unwrap();
    assert!(store.list_members(&ws.id).unwrap().is_empty());
}

fn record(at_ms: i64, key: &str, model: &str, input: u64, output: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req_{at_ms}"),
        at_ms,
        endpoint: "messages".into(),
        api_key_id: key.into(),
        workspace_id: DEFAULT_WORKSPACE_ID.into(),
        model: model.into(),
        service_tier: "standard".into(),
        tokens: TokenCounts {
            uncached_input: input,
            output,
            ..TokenCounts::default()
        },
    }
}

#[test]
fn usage_is_bucketed_grouped_and_filtered() {
    let (_dir, _path, store) = open();
    let minute = 60_000;
    let mut counted = record(5 * minute + 1, "k1", "a", 10, 1);
    counted.endpoint = "count_tokens".into();
    store
        .record_usage(&[
            record(minute, "k1", "a", 10, 1),
            record(minute + 5, "k2", "b", 20, 2),
            record(3 * minute, "k1", "a", 40, 4),
            counted,
        ])
        .unwrap();
    let all = store
        .usage(&UsageQuery {
            start_ms: 0,
            end_ms: 10 * minute,
            bucket_ms: minute,
            group_by: vec![],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].bucket_start_ms, minute);
    assert_eq!(all[0].tokens.uncached_input, 30);
    assert_eq!(all[1].tokens.output, 4);
    assert_eq!(all[0].model, None);

    let by_model = store
        .usage(&UsageQuery {
            start_ms: 0,
            end_ms: 10 * minute,
            bucket_ms: 10 * minute,
            group_by: vec![Dimension::Model],
            filters: vec![(Dimension::ApiKeyId, vec!["k1".into()])],
        })
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0].model.as_deref(), Some("a"));
    assert_eq!(by_model[0].tokens.uncached_input, 50);
}

#[test]
fn kill_switches_cover_workspace_model_and_everything() {
    let (_dir, _path, store) = open();
    assert!(!store.is_killed("w1", "m").unwrap());
    store.set_kill_switch(Some("w1"), None, true).unwrap();
    assert!(store.is_killed("w1", "m").unwrap());
    assert!(!store.is_killed("w2", "m").unwrap());
    store.set_kill_switch(Some("w1"), None, false).unwrap();
    store.set_kill_switch(None, Some("m"), true).unwrap();
    assert!(store.is_killed("w2", "m").unwrap());
    assert!(!store.is_killed("w2", "n").unwrap());
    assert_eq!(
        store.kill_switches().unwrap(),
        vec![crate::KillSwitch {
            workspace_id: None,
            model: Some("m".into())
        }]
    );
}

#[test]
fn a_secret_is_created_once_and_survives_reopen() {
    let (_dir, path, store) = open();
    let first = store.secret("s", 32).unwrap();
    drop(store);
    assert_eq!(first.len(), 32);
    let again = SqliteStore::open(&path).unwrap().secret("s", 32).unwrap();
    assert_eq!(first, again);
    assert_ne!(
        first,
        SqliteStore::open(&path).unwrap().secret("t", 32).unwrap()
    );
}

#[test]
fn the_control_generation_moves_with_keys_workspaces_and_kill_switches_only() {
    let (_dir, path, store) = open();
    let g0 = store.control_generation().unwrap();
    let key = store.create_api_key("k", KeyKind::Standard, None).unwrap();
    let g1 = store.control_generation().unwrap();
    assert!(g1 > g0);
    store.record_usage(&[record(1, "k", "m", 1, 1)]).unwrap();
    store.add_user("u@example.com", "U", "user").unwrap();
    assert_eq!(
        store.control_generation().unwrap(),
        g1,
        "usage and users do not move it"
    );
    // Another connection (as the CLI, in another process) moves it too.
    let other = SqliteStore::open(&path).unwrap();
    other
        .update_api_key(&key.key.id, None, Some(KeyStatus::Inactive))
        .unwrap();
    let g2 = store.control_generation().unwrap();
    assert!(g2 > g1);
    other.set_kill_switch(None, Some("m"), true).unwrap();
    assert!(store.control_generation().unwrap() > g2);
}

#[test]
fn a_key_past_its_expiry_reports_expired_and_is_not_usable() {
    let (_dir, _path, store) = open();
    let key = store.create_api_key("k", KeyKind::Standard, None).unwrap();
    let later = store
        .set_api_key_expiry(&key.key.id, Some(crate::now_secs() + 3600))
        .unwrap();
    assert_eq!(later.status, KeyStatus::Active);
    assert!(later.usable());
    let past = store
        .set_api_key_expiry(&key.key.id, Some(crate::now_secs() - 1))
        .unwrap();
    assert_eq!(past.status, KeyStatus::Expired);
    assert!(!past.usable());
}

fn batch_request(custom_id: &str) -> crate::NewBatchRequest {
    crate::NewBatchRequest {
        custom_id: custom_id.into(),
        params: "{}".into(),
        refused: None,
    }
}

#[test]
fn a_batch_runs_each_request_once_and_ends_with_its_tallies() {
    let (_dir, path, store) = open();
    let batch = store
        .create_batch(
            "w1",
            "k1",
            i64::MAX,
            &[batch_request("a"), batch_request("b")],
        )
        .unwrap();
    assert_eq!(batch.counts.processing, 2);
    assert!(
        store.batch("w2", &batch.id).unwrap().is_none(),
        "another workspace sees nothing"
    );
    let duplicate = store.create_batch(
        "w1",
        "k1",
        i64::MAX,
        &[batch_request("x"), batch_request("x")],
    );
    assert!(matches!(duplicate, Err(Error::Conflict(m)) if m.contains("`x`")));

    let pending = store.pending_batch_requests(10, &[]).unwrap();
    assert_eq!(pending.len(), 2);
    let skipped = store
        .pending_batch_requests(10, &[(batch.id.clone(), 0)])
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].custom_id, "b");
    let usage = record(1, "k1", "m", 3, 4);
    assert!(store
        .complete_batch_request(&batch.id, 0, "succeeded", "{}", Some(&usage))
        .unwrap());
    // A second completion (a rerun after a crash) is refused, and bills nothing.
    assert!(!store
        .complete_batch_request(&batch.id, 0, "succeeded", "{}", Some(&usage))
        .unwrap());
    // Still processing: the tallies move only when the batch ends.
    assert_eq!(
        store
            .batch("w1", &batch.id)
            .unwrap()
            .unwrap()
            .counts
            .processing,
        2
    );
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.pending_batch_requests(10, &[]).unwrap().len(), 1);
    store
        .complete_batch_request(&batch.id, 1, "errored", "{}", None)
        .unwrap();
    let ended = store.batch("w1", &batch.id).unwrap().unwrap();
    assert!(ended.ended_at_ms.is_some());
    assert_eq!(
        (
            ended.counts.succeeded,
            ended.counts.errored,
            ended.counts.processing
        ),
        (1, 1, 0)
    );
    let results = store.batch_results(&batch.id, -1, 10).unwrap();
    assert_eq!(results.len(), 2);
    let billed = store
        .usage(&UsageQuery {
            start_ms: 0,
            end_ms: i64::MAX,
            bucket_ms: i64::MAX,
            group_by: vec![],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(billed[0].tokens.output, 4, "billed once");
    store.delete_batch("w1", &batch.id).unwrap();
    assert!(store.batch("w1", &batch.id).unwrap().is_none());
}

#[test]
fn canceling_ends_a_batch_once_nothing_of_it_runs() {
    let (_dir, _path, store) = open();
    let batch = store
        .create_batch(
            "w",
            "k",
            i64::MAX,
            &[batch_request("a"), batch_request("b")],
        )
        .unwrap();
    assert!(matches!(
        store.delete_batch("w", &batch.id),
        Err(Error::Conflict(_))
    ));
    let canceling = store.cancel_batch("w", &batch.id).unwrap();
    assert!(canceling.cancel_initiated_ms.is_some() && canceling.ended_at_ms.is_none());
    assert!(store.pending_batch_requests(10, &[]).unwrap().is_empty());
    store
        .settle_batches(std::slice::from_ref(&batch.id))
        .unwrap();
    assert!(
        store
            .batch("w", &batch.id)
            .unwrap()
            .unwrap()
            .ended_at_ms
            .is_none(),
        "a request still runs"
    );
    store.settle_batches(&[]).unwrap();
    let ended = store.batch("w", &batch.id).unwrap().unwrap();
    assert_eq!(ended.counts.canceled, 2);
    // Expiry: past expires_at, pending requests end as expired.
    let old = store
        .create_batch("w", "k", 0, &[batch_request("c")])
        .unwrap();
    store.settle_batches(&[]).unwrap();
    assert_eq!(
        store.batch("w", &old.id).unwrap().unwrap().counts.expired,
        1
    );
}
