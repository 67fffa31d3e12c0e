//! Against a real Redis: the server `MISSIVE_TEST_REDIS` names (`scripts/test` starts one
//! from Debian's package). Each test keeps its keys under a prefix of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn redis_url() -> String {
    std::env::var("MISSIVE_TEST_REDIS").expect(
        "MISSIVE_TEST_REDIS must name a Redis server for the tests (scripts/test starts one)",
    )
}

fn open() -> Coordination {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("test-{}-{nanos}", std::process::id());
    Coordination::open(&redis_url(), &prefix, Duration::from_millis(500)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_taking_at_once_never_take_more_than_the_bucket_holds() {
    let first = Arc::new(open());
    // A second connection with the same prefix: another replica.
    let second = Arc::new(
        Coordination::open(&redis_url(), &first.prefix, Duration::from_millis(500)).unwrap(),
    );
    let workers: Vec<_> = [&first, &second, &first, &second]
        .into_iter()
        .map(|c| {
            let c = Arc::clone(c);
            tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..50 {
                    let take = c
                        .take("w", &[60.0, 1e6], &[1.0, 10.0], &[0.0, 0.0])
                        .await
                        .unwrap();
                    granted += usize::from(take.short.is_none());
                }
                granted
            })
        })
        .collect();
    let mut granted = 0;
    for worker in workers {
        granted += worker.await.unwrap();
    }
    // 60 at once, plus what a minute-long refill adds while the burst runs (one a second).
    assert!((60..=62).contains(&granted), "granted {granted} of 200");
    let refused = first
        .take("w", &[60.0, 1e6], &[1.0, 10.0], &[0.0, 0.0])
        .await
        .unwrap();
    assert_eq!(
        refused.short,
        Some(0),
        "the request bucket is the short one"
    );
    assert!(refused.levels[0] < 1.0);
    assert!(refused.levels[1] > 1e6 - 10.0 * 63.0);
}

#[tokio::test]
async fn what_a_request_does_not_use_flows_back() {
    let c = open();
    let taken = c
        .take("w", &[10.0, 1000.0], &[1.0, 800.0], &[0.0, 0.0])
        .await
        .unwrap();
    assert_eq!(taken.short, None);
    assert!((taken.levels[1] - 200.0).abs() < 1.0);
    let short = c
        .take("w", &[10.0, 1000.0], &[1.0, 600.0], &[0.0, 0.0])
        .await
        .unwrap();
    assert_eq!(short.short, Some(1));
    c.give_back("w", &[10.0, 1000.0], &[0.0, 700.0]);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let again = c
            .take("w", &[10.0, 1000.0], &[0.0, 0.0], &[0.0, 0.0])
            .await
            .unwrap();
        if again.levels[1] > 850.0 {
            assert!(again.levels[1] <= 1000.0, "capped at capacity");
            break;
        }
        assert!(Instant::now() < deadline, "the give-back never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_lease_is_taken_only_when_every_bucket_holds_it_on_top_of_the_request() {
    let c = open();
    let caps = [100.0, 10_000.0];
    let taken = c
        .take("w", &caps, &[1.0, 500.0], &[10.0, 1_000.0])
        .await
        .unwrap();
    assert_eq!((taken.short, taken.leased), (None, true));
    assert!((taken.levels[0] - 89.0).abs() < 0.1, "{:?}", taken.levels);
    assert!(
        (taken.levels[1] - 8_500.0).abs() < 10.0,
        "{:?}",
        taken.levels
    );
    // The request fits and the lease does not: the request alone is taken.
    let request_only = c
        .take("w", &caps, &[1.0, 8_000.0], &[10.0, 1_000.0])
        .await
        .unwrap();
    assert_eq!((request_only.short, request_only.leased), (None, false));
    assert!(request_only.levels[1] < 600.0, "{:?}", request_only.levels);
    // Neither fits: nothing is taken, lease included.
    let refused = c
        .take("w", &caps, &[1.0, 5_000.0], &[10.0, 1_000.0])
        .await
        .unwrap();
    assert_eq!((refused.short, refused.leased), (Some(1), false));
    assert!((refused.levels[0] - request_only.levels[0]).abs() < 0.1);
    // No lease asked for is no lease taken.
    let plain = c.take("w", &caps, &[1.0, 0.0], &[0.0, 0.0]).await.unwrap();
    assert_eq!((plain.short, plain.leased), (None, false));
}

/// Awaited and synchronous calls mixed on one thread: the connection's task runs on the
/// coordination runtime, so a synchronous call blocking this thread cannot stall it.
#[tokio::test(flavor = "current_thread")]
async fn spend_is_seeded_once_then_added_atomically() {
    let c = open();
    assert_eq!(c.spent("2026-11", "w1").await.unwrap(), None);
    assert!(
        !c.add_spend("2026-11", "w1", 5.0).unwrap(),
        "unseeded: nothing added"
    );
    let ledger = HashMap::from([("w1".to_owned(), 40.0), ("w2".to_owned(), 2.5)]);
    c.seed_spend("2026-11", 42.5, &ledger).unwrap();
    // A second seed (another replica, a moment later) changes nothing.
    c.seed_spend("2026-11", 1.0, &HashMap::new()).unwrap();
    assert!(c.add_spend("2026-11", "w1", 5.0).unwrap());
    assert_eq!(
        c.spent("2026-11", "w1").await.unwrap(),
        Some(Spent {
            organization_cents: 47.5,
            workspace_cents: 45.0
        })
    );
    assert_eq!(
        c.spent("2026-11", "w3")
            .await
            .unwrap()
            .unwrap()
            .workspace_cents,
        0.0
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_an_answer_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Coordination::open(
        &format!("redis://127.0.0.1:{port}"),
        "down",
        Duration::from_millis(200),
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(
        c.take("w", &[1.0], &[1.0], &[0.0]).await,
        Err(Error::Unreachable(_))
    ));
    assert!(matches!(c.ping(), Err(Error::Unreachable(_))));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
