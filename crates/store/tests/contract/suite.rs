//! The contract, written once against `dyn Store`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use missive_store::{
    hash_key, AuditEntry, CapturedContent, Dimension, Error, FileMeta, KeyKind, KeyStatus,
    KillSwitch, LabelTarget, NewBatchRequest, RequestLogEntry, RequestLogQuery, SplitShare, Store,
    TokenCounts, UsageQuery, UsageRecord, WorkspaceLimits, DEFAULT_WORKSPACE_ID, PRODUCTION,
};

use crate::fixtures::Fixture;

fn now_secs() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Waits up to the promised second for `check` to hold.
fn within_a_second(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn created_key_is_found_by_hash_and_revocation_is_seen_by_another_handle(f: &Fixture) {
    let store = &f.store;
    let new = store.create_api_key("ci", KeyKind::Standard, None).unwrap();
    assert!(new.secret.starts_with("sk-ant-api03-"));
    let found = store.find_api_key(&hash_key(&new.secret)).unwrap().unwrap();
    assert_eq!(found.id, new.key.id);
    assert_eq!(found.workspace_id.as_deref(), Some(DEFAULT_WORKSPACE_ID));
    assert_eq!(found.workspace_name.as_deref(), Some("default"));
    store
        .update_api_key(&new.key.id, None, Some(KeyStatus::Inactive))
        .unwrap();
    let again = f.open_again();
    let found = again.find_api_key(&hash_key(&new.secret)).unwrap().unwrap();
    assert_eq!(found.status, KeyStatus::Inactive);
    assert!(again
        .find_api_key(&hash_key("sk-ant-api03-wrong"))
        .unwrap()
        .is_none());
    assert_eq!(again.list_api_keys().unwrap().len(), 1);
}

pub fn admin_keys_have_their_own_prefix_and_no_workspace(f: &Fixture) {
    let admin = f.store.create_api_key("ops", KeyKind::Admin, None).unwrap();
    assert!(admin.secret.starts_with("sk-ant-admin01-"));
    assert_eq!(admin.key.kind, KeyKind::Admin);
    assert_eq!(admin.key.workspace_id, None);
}

pub fn archiving_a_workspace_archives_its_keys_and_they_stay_archived(f: &Fixture) {
    let store = &f.store;
    let ws = store.create_workspace("team-a").unwrap();
    assert!(matches!(
        store.create_workspace("team-a"),
        Err(Error::Conflict(_))
    ));
    let renamed = store.rename_workspace(&ws.id, "team-b").unwrap();
    assert_eq!(renamed.name, "team-b");
    assert_eq!(
        store.workspace_by_name("team-b").unwrap().unwrap().id,
        ws.id
    );
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
    assert!(matches!(
        store.create_api_key("late", KeyKind::Standard, Some(&ws.id)),
        Err(Error::Conflict(_))
    ));
    assert!(store
        .list_workspaces(false)
        .unwrap()
        .iter()
        .all(|w| w.id != ws.id));
    let all: Vec<String> = store
        .list_workspaces(true)
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(all, vec![DEFAULT_WORKSPACE_ID.to_owned(), ws.id.clone()]);
    assert!(store.archive_workspace(DEFAULT_WORKSPACE_ID).is_err());
    assert!(matches!(
        store.archive_workspace("wrkspc_none"),
        Err(Error::NotFound { .. })
    ));
}

pub fn users_and_members_keep_their_roles(f: &Fixture) {
    let store = &f.store;
    let user = store
        .add_user("ada@example.com", "Ada", "developer")
        .unwrap();
    assert!(matches!(
        store.add_user("ada@example.com", "Ada", "user"),
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.list_users(Some("ada@example.com")).unwrap(),
        vec![user.clone()]
    );
    assert_eq!(
        store.set_user_role(&user.id, "admin").unwrap().role,
        "admin"
    );
    let ws = store.create_workspace("ml").unwrap();
    store
        .add_member(&ws.id, &user.id, "workspace_developer")
        .unwrap();
    assert!(matches!(
        store.add_member(&ws.id, &user.id, "workspace_developer"),
        Err(Error::Conflict(_))
    ));
    let member = store
        .set_member_role(&ws.id, &user.id, "workspace_admin")
        .unwrap();
    assert_eq!(member.workspace_role, "workspace_admin");
    assert_eq!(store.list_members(&ws.id).unwrap().len(), 1);
    store.remove_user(&user.id).unwrap();
    assert!(store.list_members(&ws.id).unwrap().is_empty());
    assert!(matches!(
        store.remove_user(&user.id),
        Err(Error::NotFound { .. })
    ));
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
        prompt_version: None,
        schema_version: None,
        tokens: TokenCounts {
            uncached_input: input,
            output,
            ..TokenCounts::default()
        },
    }
}

fn everything() -> UsageQuery {
    UsageQuery {
        start_ms: 0,
        end_ms: i64::MAX,
        bucket_ms: i64::MAX,
        group_by: vec![],
        filters: vec![],
    }
}

pub fn usage_is_bucketed_grouped_and_filtered(f: &Fixture) {
    let store = &f.store;
    let minute = 60_000;
    let mut counted = record(5 * minute + 1, "k1", "a", 10, 1);
    counted.endpoint = "count_tokens".into();
    let mut searched = record(3 * minute, "k2", "b", 0, 0);
    searched.tokens.web_search_requests = 2;
    searched.tokens.code_execution_ms = 1500;
    store
        .record_usage(&[
            record(minute, "k1", "a", 10, 1),
            record(minute + 5, "k2", "b", 20, 2),
            record(3 * minute, "k1", "a", 40, 4),
            counted,
            searched,
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
    assert_eq!(all[1].tokens.web_search_requests, 2);
    assert_eq!(all[1].tokens.code_execution_ms, 1500);
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
    assert_eq!(by_model[0].api_key_id, None);
    assert_eq!(by_model[0].tokens.uncached_input, 50);
    let total = store.usage(&everything()).unwrap();
    assert_eq!(total.len(), 1);
    assert_eq!(total[0].tokens.output, 7, "count_tokens is not billed");
}

/// Commits as the server's ledger does: through the store's async writer where it has one.
fn commit_as_the_ledger_does(store: &dyn Store, records: Vec<UsageRecord>) -> Result<(), Error> {
    let Some(writer) = store.usage_writer() else {
        return store.record_usage(&records);
    };
    let (done, answer) = std::sync::mpsc::channel();
    let write = writer.write(records);
    writer.runtime().spawn(async move {
        let _ = done.send(write.await);
    });
    answer.recv().unwrap()
}

pub fn usage_committed_as_the_ledger_does_is_durable_for_every_handle(f: &Fixture) {
    let first: Vec<UsageRecord> = (1..=3).map(|i| record(i, "k", "m", 10, 1)).collect();
    commit_as_the_ledger_does(&*f.store, first).unwrap();
    commit_as_the_ledger_does(&*f.store, vec![record(4, "k", "m", 70, 7)]).unwrap();
    commit_as_the_ledger_does(&*f.store, vec![]).unwrap();
    let again = f.open_again();
    let total = again.usage(&everything()).unwrap();
    assert_eq!(total.len(), 1, "{total:?}");
    assert_eq!(total[0].tokens.uncached_input, 100);
    assert_eq!(total[0].tokens.output, 10);
}

pub fn usage_groups_by_the_registry_versions_a_call_used(f: &Fixture) {
    let store = &f.store;
    let mut first = record(1, "k", "m", 10, 1);
    first.prompt_version = Some("support@1".into());
    let mut second = record(2, "k", "m", 20, 2);
    second.prompt_version = Some("support@2".into());
    second.schema_version = Some("order@1".into());
    let mut again = record(3, "k", "m", 40, 4);
    again.prompt_version = Some("support@2".into());
    store
        .record_usage(&[first, second, again, record(4, "k", "m", 80, 8)])
        .unwrap();
    let mut rows = store
        .usage(&UsageQuery {
            group_by: vec![Dimension::PromptVersion],
            ..everything()
        })
        .unwrap();
    rows.sort_by(|a, b| a.prompt_version.cmp(&b.prompt_version));
    let totals: Vec<(Option<&str>, u64)> = rows
        .iter()
        .map(|r| (r.prompt_version.as_deref(), r.tokens.uncached_input))
        .collect();
    assert_eq!(
        totals,
        [(None, 80), (Some("support@1"), 10), (Some("support@2"), 60)]
    );
    let by_schema = store
        .usage(&UsageQuery {
            group_by: vec![Dimension::SchemaVersion],
            filters: vec![(Dimension::SchemaVersion, vec!["order@1".into()])],
            ..everything()
        })
        .unwrap();
    assert_eq!(by_schema.len(), 1);
    assert_eq!(by_schema[0].schema_version.as_deref(), Some("order@1"));
    assert_eq!(by_schema[0].tokens.output, 2);
}

pub fn the_audit_log_lists_newest_first(f: &Fixture) {
    for (at_ms, action) in [(1, "created"), (2, "archived")] {
        f.store
            .audit(&AuditEntry {
                at_ms,
                actor: "cli".into(),
                action: action.into(),
                target: "w".into(),
                detail: "{}".into(),
            })
            .unwrap();
    }
    let log = f.store.audit_log(10).unwrap();
    assert_eq!(
        log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["archived", "created"]
    );
    assert_eq!(f.store.audit_log(1).unwrap().len(), 1);
}

pub fn kill_switches_cover_workspace_model_and_everything(f: &Fixture) {
    let store = &f.store;
    assert!(!store.is_killed("w1", "m").unwrap());
    store.set_kill_switch(Some("w1"), None, true).unwrap();
    store.set_kill_switch(Some("w1"), None, true).unwrap();
    assert!(store.is_killed("w1", "m").unwrap());
    assert!(!store.is_killed("w2", "m").unwrap());
    store.set_kill_switch(Some("w1"), None, false).unwrap();
    store.set_kill_switch(None, Some("m"), true).unwrap();
    assert!(store.is_killed("w2", "m").unwrap());
    assert!(!store.is_killed("w2", "n").unwrap());
    assert_eq!(
        store.kill_switches().unwrap(),
        vec![KillSwitch {
            workspace_id: None,
            model: Some("m".into())
        }]
    );
}

pub fn a_secret_is_created_once_and_every_handle_reads_it(f: &Fixture) {
    let first = f.store.secret("s", 32).unwrap();
    assert_eq!(first.len(), 32);
    let again = f.open_again();
    assert_eq!(again.secret("s", 32).unwrap(), first);
    assert_ne!(again.secret("t", 32).unwrap(), first);
}

pub fn the_control_generation_moves_with_keys_workspaces_and_kill_switches_only(f: &Fixture) {
    let store = &f.store;
    let g0 = store.control_generation().unwrap();
    let key = store.create_api_key("k", KeyKind::Standard, None).unwrap();
    let local = store.local_control_changes();
    assert!(local > 0, "this handle counts its own changes at once");
    assert!(within_a_second(|| store.control_generation().unwrap() > g0));
    let g1 = store.control_generation().unwrap();
    store.record_usage(&[record(1, "k", "m", 1, 1)]).unwrap();
    store.add_user("u@example.com", "U", "user").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.control_generation().unwrap(),
        g1,
        "usage and users do not move it"
    );
    assert_eq!(store.local_control_changes(), local);
    // Another handle (the CLI in another process, another replica) moves it too, and this
    // one sees that within a second.
    let other = f.open_again();
    other
        .update_api_key(&key.key.id, None, Some(KeyStatus::Inactive))
        .unwrap();
    assert!(within_a_second(|| store.control_generation().unwrap() > g1));
    let g2 = store.control_generation().unwrap();
    other.set_kill_switch(None, Some("m"), true).unwrap();
    assert!(within_a_second(|| store.control_generation().unwrap() > g2));
}

pub fn a_key_past_its_expiry_reports_expired_and_is_not_usable(f: &Fixture) {
    let store = &f.store;
    let key = store.create_api_key("k", KeyKind::Standard, None).unwrap();
    let later = store
        .set_api_key_expiry(&key.key.id, Some(now_secs() + 3600))
        .unwrap();
    assert_eq!(later.status, KeyStatus::Active);
    assert!(later.usable());
    let past = store
        .set_api_key_expiry(&key.key.id, Some(now_secs() - 1))
        .unwrap();
    assert_eq!(past.status, KeyStatus::Expired);
    assert!(!past.usable());
}

fn batch_request(custom_id: &str) -> NewBatchRequest {
    NewBatchRequest {
        custom_id: custom_id.into(),
        params: "{}".into(),
        refused: None,
    }
}

const LEASE_MS: i64 = 60_000;

pub fn a_batch_runs_each_request_once_and_ends_with_its_tallies(f: &Fixture) {
    let store = &f.store;
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
    let refused = store
        .create_batch(
            "w1",
            "k1",
            i64::MAX,
            &[NewBatchRequest {
                refused: Some("{\"type\":\"errored\"}".into()),
                ..batch_request("r")
            }],
        )
        .unwrap();
    assert!(
        refused.ended_at_ms.is_some(),
        "nothing to run: ended at once"
    );
    assert_eq!(refused.counts.errored, 1);

    let skipped = store
        .claim_batch_requests("r1", 10, LEASE_MS, &[(batch.id.clone(), 0)])
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].custom_id, "b");
    let claimed = store.claim_batch_requests("r1", 10, LEASE_MS, &[]).unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.idx).collect::<Vec<_>>(),
        [0, 1],
        "submission order"
    );
    assert_eq!(claimed[0].workspace_id, "w1");
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
    // The same replica, restarted, takes its own lease back at once.
    let again = f.open_again();
    let resumed = again.claim_batch_requests("r1", 10, LEASE_MS, &[]).unwrap();
    assert_eq!(resumed.len(), 1);
    again
        .complete_batch_request(&batch.id, 1, "errored", "{}", None)
        .unwrap();
    let ended = again.batch("w1", &batch.id).unwrap().unwrap();
    assert!(ended.ended_at_ms.is_some());
    assert_eq!(
        (
            ended.counts.succeeded,
            ended.counts.errored,
            ended.counts.processing
        ),
        (1, 1, 0)
    );
    let results = again.batch_results(&batch.id, -1, 10).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(again.batch_results(&batch.id, 0, 10).unwrap().len(), 1);
    let billed = again.usage(&everything()).unwrap();
    assert_eq!(billed[0].tokens.output, 4, "billed once");
    assert_eq!(again.list_batches("w1").unwrap().len(), 2);
    again.delete_batch("w1", &batch.id).unwrap();
    assert!(again.batch("w1", &batch.id).unwrap().is_none());
    assert_eq!(again.list_batches("w1").unwrap().len(), 1);
}

pub fn canceling_ends_a_batch_once_nothing_of_it_runs(f: &Fixture) {
    let store = &f.store;
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
    assert!(store
        .claim_batch_requests("r1", 10, LEASE_MS, &[])
        .unwrap()
        .is_empty());
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

pub fn a_lease_keeps_a_request_from_other_owners_until_it_runs_out(f: &Fixture) {
    let store = &f.store;
    let other = f.open_again();
    let batch = store
        .create_batch("w", "k", i64::MAX, &[batch_request("a")])
        .unwrap();
    assert_eq!(
        store
            .claim_batch_requests("r1", 10, 300, &[])
            .unwrap()
            .len(),
        1
    );
    assert!(
        other
            .claim_batch_requests("r2", 10, 300, &[])
            .unwrap()
            .is_empty(),
        "r1 holds it"
    );
    // A canceled batch waits for the request another replica runs.
    store.cancel_batch("w", &batch.id).unwrap();
    other.settle_batches(&[]).unwrap();
    assert!(other
        .batch("w", &batch.id)
        .unwrap()
        .unwrap()
        .ended_at_ms
        .is_none());
    // r1 renews, so the lease outlives its first term; then r1 dies and it runs out.
    std::thread::sleep(Duration::from_millis(200));
    store.renew_batch_leases("r1", 300).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    other.settle_batches(&[]).unwrap();
    assert!(
        other
            .batch("w", &batch.id)
            .unwrap()
            .unwrap()
            .ended_at_ms
            .is_none(),
        "the renewed lease still holds"
    );
    std::thread::sleep(Duration::from_millis(250));
    other.settle_batches(&[]).unwrap();
    assert_eq!(
        other
            .batch("w", &batch.id)
            .unwrap()
            .unwrap()
            .counts
            .canceled,
        1
    );

    // A released lease (the model was busy) frees the request at once.
    let busy = store
        .create_batch("w", "k", i64::MAX, &[batch_request("z")])
        .unwrap();
    assert_eq!(
        store
            .claim_batch_requests("r1", 10, LEASE_MS, &[])
            .unwrap()
            .len(),
        1
    );
    assert!(other
        .claim_batch_requests("r2", 10, LEASE_MS, &[])
        .unwrap()
        .is_empty());
    other.release_batch_request("r2", &busy.id, 0).unwrap();
    assert!(
        other
            .claim_batch_requests("r2", 10, LEASE_MS, &[])
            .unwrap()
            .is_empty(),
        "only its owner releases a lease"
    );
    store.release_batch_request("r1", &busy.id, 0).unwrap();
    let freed = other.claim_batch_requests("r2", 10, LEASE_MS, &[]).unwrap();
    assert_eq!(freed.len(), 1);
    other
        .complete_batch_request(&busy.id, 0, "succeeded", "{}", None)
        .unwrap();

    // A lease that runs out puts the request back for anyone.
    let next = store
        .create_batch("w", "k", i64::MAX, &[batch_request("b")])
        .unwrap();
    assert_eq!(
        store
            .claim_batch_requests("r1", 10, 100, &[])
            .unwrap()
            .len(),
        1
    );
    std::thread::sleep(Duration::from_millis(150));
    let taken = other.claim_batch_requests("r2", 10, LEASE_MS, &[]).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].batch_id, next.id);
    // The late first owner's result loses to nothing: whoever finishes first is stored.
    assert!(other
        .complete_batch_request(&next.id, 0, "succeeded", "{}", None)
        .unwrap());
    assert!(!store
        .complete_batch_request(&next.id, 0, "succeeded", "{}", None)
        .unwrap());
}

pub fn owners_claiming_at_once_never_take_the_same_request(f: &Fixture) {
    let requests: Vec<NewBatchRequest> =
        (0..120).map(|i| batch_request(&format!("r{i}"))).collect();
    let batch = f.store.create_batch("w", "k", i64::MAX, &requests).unwrap();
    let handles: Vec<Box<dyn Store>> = (0..3).map(|_| f.open_again()).collect();
    let taken: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(n, store)| {
                scope.spawn(move || {
                    let owner = format!("replica-{n}");
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store
                            .claim_batch_requests(&owner, 7, LEASE_MS, &[])
                            .unwrap();
                        if claimed.is_empty() {
                            break;
                        }
                        for r in claimed {
                            assert!(store
                                .complete_batch_request(&r.batch_id, r.idx, "succeeded", "{}", None)
                                .unwrap());
                            mine.push(r.idx);
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<i64> = taken.iter().flatten().copied().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 120, "every request ran once: {taken:?}");
    assert_eq!(distinct.len(), 120);
    let ended = f.store.batch("w", &batch.id).unwrap().unwrap();
    assert_eq!(ended.counts.succeeded, 120);
}

pub fn files_are_scoped_by_workspace_and_deleted_once(f: &Fixture) {
    let store = &f.store;
    for (id, at) in [("file_a", 1), ("file_b", 2)] {
        store
            .add_file(&FileMeta {
                id: id.into(),
                workspace_id: "w1".into(),
                filename: format!("{id}.txt"),
                mime_type: "text/plain".into(),
                size_bytes: 5,
                created_at_ms: at,
                downloadable: id == "file_b",
            })
            .unwrap();
    }
    assert!(store.file("w2", "file_a").unwrap().is_none());
    let b = store.file("w1", "file_b").unwrap().unwrap();
    assert!(b.downloadable);
    assert_eq!(b.size_bytes, 5);
    let listed: Vec<String> = store
        .list_files("w1")
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(listed, ["file_b", "file_a"], "newest first");
    assert!(matches!(
        store.delete_file("w2", "file_a"),
        Err(Error::NotFound { .. })
    ));
    store.delete_file("w1", "file_a").unwrap();
    assert!(matches!(
        store.delete_file("w1", "file_a"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(f.open_again().list_files("w1").unwrap().len(), 1);
}

pub fn registry_versions_are_immutable_and_labels_move(f: &Fixture) {
    use missive_store::{RegistryKind::Prompt, RegistryKind::Schema, PRODUCTION};
    let store = &f.store;
    let first = store
        .add_registry_version("w1", Prompt, "support", "Be kind.")
        .unwrap();
    assert_eq!(first.version, 1);
    let second = store
        .add_registry_version("w1", Prompt, "support", "Be brief.")
        .unwrap();
    assert_eq!(second.version, 2);
    let entry = store
        .registry_entry("w1", Prompt, "support")
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.labelled(PRODUCTION).unwrap().body,
        "Be kind.",
        "the first version is production until a label moves"
    );
    assert_eq!(entry.version(2).unwrap().body, "Be brief.");
    let moved = store
        .set_registry_label(
            "w1",
            Prompt,
            "support",
            PRODUCTION,
            &LabelTarget::Version(2),
        )
        .unwrap();
    assert_eq!(moved.labelled(PRODUCTION).unwrap().version, 2);
    store
        .set_registry_label("w1", Prompt, "support", "staging", &LabelTarget::Version(1))
        .unwrap();
    assert!(matches!(
        store.set_registry_label("w1", Prompt, "support", "staging", &LabelTarget::Version(3)),
        Err(Error::NotFound { .. })
    ));
    assert!(store
        .registry_entry("w2", Prompt, "support")
        .unwrap()
        .is_none());
    assert!(store
        .registry_entry("w1", Schema, "support")
        .unwrap()
        .is_none());
    store
        .add_registry_version("w1", Prompt, "billing", "Quote prices.")
        .unwrap();
    let listed = f.open_again().list_registry("w1", Prompt).unwrap();
    assert_eq!(
        listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["billing", "support"]
    );
    let support = &listed[1];
    assert_eq!(
        support.versions[0].body, "Be kind.",
        "versions never change"
    );
    assert_eq!(
        support.labels,
        vec![
            (PRODUCTION.to_owned(), LabelTarget::Version(2)),
            ("staging".to_owned(), LabelTarget::Version(1))
        ]
    );
}

pub fn a_label_can_split_over_versions_and_back(f: &Fixture) {
    use missive_store::RegistryKind::Prompt;
    let store = &f.store;
    for text in ["A", "B", "C"] {
        store.add_registry_version("w", Prompt, "ab", text).unwrap();
    }
    let split = LabelTarget::Split(vec![
        SplitShare {
            version: 1,
            weight: 70,
        },
        SplitShare {
            version: 3,
            weight: 30,
        },
    ]);
    store
        .set_registry_label("w", Prompt, "ab", PRODUCTION, &split)
        .unwrap();
    let entry = f
        .open_again()
        .registry_entry("w", Prompt, "ab")
        .unwrap()
        .unwrap();
    assert_eq!(entry.label(PRODUCTION), Some(&split));
    assert_eq!(
        entry.labelled(PRODUCTION),
        None,
        "a split is not one version"
    );
    let missing = LabelTarget::Split(vec![SplitShare {
        version: 9,
        weight: 1,
    }]);
    assert!(matches!(
        store.set_registry_label("w", Prompt, "ab", PRODUCTION, &missing),
        Err(Error::NotFound { .. })
    ));
    let back = store
        .set_registry_label("w", Prompt, "ab", PRODUCTION, &LabelTarget::Version(2))
        .unwrap();
    assert_eq!(back.labelled(PRODUCTION).unwrap().body, "B");
}

pub fn replicas_adding_versions_at_once_number_them_without_gaps(f: &Fixture) {
    use missive_store::RegistryKind::Schema;
    let handles: Vec<Box<dyn Store>> = (0..3).map(|_| f.open_again()).collect();
    let numbers: Vec<i64> = std::thread::scope(|scope| {
        let writers: Vec<_> = handles
            .iter()
            .map(|store| {
                scope.spawn(move || {
                    (0..5)
                        .map(|_| {
                            store
                                .add_registry_version("w", Schema, "order", "{}")
                                .unwrap()
                                .version
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let distinct: HashSet<i64> = numbers.iter().copied().collect();
    assert_eq!(distinct, (1..=15).collect::<HashSet<i64>>());
}

pub fn workspace_limits_are_set_read_back_and_cleared_and_move_the_generation(f: &Fixture) {
    let store = &f.store;
    let before = store.control_generation().unwrap();
    let limits = WorkspaceLimits {
        requests_per_minute: Some(1),
        spend_cap_usd: Some(2.5),
        capture_content_days: Some(7),
        ..WorkspaceLimits::default()
    };
    store.set_workspace_limits("w1", &limits).unwrap();
    let other = f.open_again();
    let deadline = Instant::now() + Duration::from_secs(2);
    while other.control_generation().unwrap() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        other.control_generation().unwrap() > before,
        "replicas see the change"
    );
    assert_eq!(
        other.workspace_limits().unwrap(),
        vec![("w1".to_owned(), limits)]
    );
    let raised = WorkspaceLimits {
        requests_per_minute: Some(100),
        ..limits
    };
    store.set_workspace_limits("w1", &raised).unwrap();
    assert_eq!(store.workspace_limits().unwrap()[0].1, raised);
    store
        .set_workspace_limits("w1", &WorkspaceLimits::default())
        .unwrap();
    assert!(store.workspace_limits().unwrap().is_empty());
}

pub fn the_request_log_keeps_failures_filters_and_is_pruned(f: &Fixture) {
    let store = &f.store;
    let entry = |at_ms: i64, workspace: &str, status: u16| RequestLogEntry {
        request_id: format!("req_{at_ms}"),
        at_ms,
        workspace_id: workspace.into(),
        api_key_id: format!("key_{workspace}"),
        method: "POST".into(),
        path: "/v1/messages".into(),
        status,
        latency_ms: 120,
        model: Some("m".into()),
        upstream: (status == 200).then(|| "vllm-a".into()),
        prompt_version: Some("support@2".into()),
        input_tokens: 10,
        output_tokens: 3,
        cache_read_input_tokens: 4,
        cache_creation_input_tokens: 5,
    };
    let rows = [
        entry(1, "w1", 200),
        entry(2, "w1", 429),
        entry(3, "w2", 500),
    ];
    store.log_requests(&rows).unwrap();
    let all = RequestLogQuery {
        limit: 10,
        ..RequestLogQuery::default()
    };
    let newest = f.open_again().request_log(&all).unwrap();
    assert_eq!(
        newest,
        vec![rows[2].clone(), rows[1].clone(), rows[0].clone()]
    );
    let w1_errors = store
        .request_log(&RequestLogQuery {
            workspace_id: Some("w1".into()),
            errors_only: true,
            ..all.clone()
        })
        .unwrap();
    assert_eq!(w1_errors, vec![rows[1].clone()]);
    let by_key = store
        .request_log(&RequestLogQuery {
            api_key_id: Some("key_w2".into()),
            ..all.clone()
        })
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(store.prune_request_log(3).unwrap(), 2);
    assert_eq!(store.request_log(&all).unwrap(), vec![rows[2].clone()]);
}

pub fn captured_content_is_scoped_by_workspace_and_gone_once_expired(f: &Fixture) {
    let store = &f.store;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let row = |id: &str, expires_at_ms: i64| CapturedContent {
        request_id: id.into(),
        workspace_id: "w1".into(),
        at_ms: now,
        expires_at_ms,
        request: format!("{{\"asked\": \"{id}\"}}"),
        response: "{\"content\": []}".into(),
    };
    let kept = row("req_kept", now + 60_000);
    let expired = row("req_expired", now - 1);
    store
        .capture_content(&[kept.clone(), expired.clone()])
        .unwrap();
    assert_eq!(
        store.captured_content("w1", "req_kept").unwrap(),
        Some(kept)
    );
    assert_eq!(
        store.captured_content("w2", "req_kept").unwrap(),
        None,
        "another workspace cannot read it"
    );
    assert_eq!(
        store.captured_content("w1", "req_expired").unwrap(),
        None,
        "expired content reads as gone before it is pruned"
    );
    assert_eq!(store.prune_captured_content(now).unwrap(), 1);
    assert!(store.captured_content("w1", "req_kept").unwrap().is_some());
}
