//! One contract for every store: each test below runs against SQLite (a file in a temp
//! directory) and against PostgreSQL (a fresh database on the server `MISSIVE_TEST_POSTGRES`
//! names; `scripts/test` starts one from Debian's package), so the two cannot drift.

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod suite;

/// Lists each contract test once, for one store.
macro_rules! contract {
    ($fixture:path; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                crate::suite::$test(&$fixture());
            }
        )*
    };
}

macro_rules! every_store {
    ($($test:ident),* $(,)?) => {
        #[cfg(test)]
        mod sqlite {
            contract!(crate::fixtures::sqlite; $($test),*);
        }
        #[cfg(test)]
        mod postgres {
            contract!(crate::fixtures::postgres; $($test),*);
        }
    };
}

every_store!(
    created_key_is_found_by_hash_and_revocation_is_seen_by_another_handle,
    admin_keys_have_their_own_prefix_and_no_workspace,
    archiving_a_workspace_archives_its_keys_and_they_stay_archived,
    users_and_members_keep_their_roles,
    usage_is_bucketed_grouped_and_filtered,
    usage_committed_as_the_ledger_does_is_durable_for_every_handle,
    usage_groups_by_the_registry_versions_a_call_used,
    the_request_log_keeps_failures_filters_and_is_pruned,
    captured_content_is_scoped_by_workspace_and_gone_once_expired,
    the_audit_log_lists_newest_first,
    kill_switches_cover_workspace_model_and_everything,
    workspace_limits_are_set_read_back_and_cleared_and_move_the_generation,
    a_secret_is_created_once_and_every_handle_reads_it,
    the_control_generation_moves_with_keys_workspaces_and_kill_switches_only,
    a_key_past_its_expiry_reports_expired_and_is_not_usable,
    a_batch_runs_each_request_once_and_ends_with_its_tallies,
    canceling_ends_a_batch_once_nothing_of_it_runs,
    a_lease_keeps_a_request_from_other_owners_until_it_runs_out,
    owners_claiming_at_once_never_take_the_same_request,
    files_are_scoped_by_workspace_and_deleted_once,
    registry_versions_are_immutable_and_labels_move,
    a_label_can_split_over_versions_and_back,
    replicas_adding_versions_at_once_number_them_without_gaps,
);

/// Replicas starting together on an empty database: one applies the migrations under the
/// lock, the others wait for it and find them applied.
#[cfg(test)]
#[test]
fn replicas_starting_at_once_migrate_a_postgres_database_once() {
    let fresh = fixtures::fresh_postgres_database(&fixtures::postgres_server());
    let stores: Vec<missive_store::PostgresStore> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| missive_store::PostgresStore::open(&fresh).unwrap()))
            .collect();
        starting.into_iter().map(|s| s.join().unwrap()).collect()
    });
    use missive_store::Store;
    let organizations: std::collections::HashSet<String> = stores
        .iter()
        .map(|s| s.organization().unwrap().id)
        .collect();
    assert_eq!(organizations.len(), 1, "one organization, seen by all");
    assert_eq!(stores[0].list_workspaces(true).unwrap().len(), 1);
}

/// PostgreSQL's driver is async: the ledger commits through it without a waiting thread.
#[cfg(test)]
#[test]
fn postgres_offers_the_ledger_an_async_writer() {
    let store = fixtures::postgres().store;
    assert!(store.usage_writer().is_some());
}
