//! The usage ledger and what rests on it: usage and cost reports, spend caps, the kill
//! switch, and workspaces kept apart.

use std::collections::HashMap;

use missive_server::limits::{Limits, RateLimiter};
use missive_server::spend::{Price, Prices, SpendLimits};
use missive_store::{KeyKind, NewApiKey, Store};
use serde_json::{json, Value};

use super::common::{assert_error, hello, parse_sse, user, TestServer};

fn key_in(server: &TestServer, workspace: &str) -> NewApiKey {
    let ws = match server.store.workspace_by_name(workspace).unwrap() {
        Some(ws) => ws,
        None => server.store.create_workspace(workspace).unwrap(),
    };
    server
        .store
        .create_api_key(workspace, KeyKind::Standard, Some(&ws.id))
        .unwrap()
}

async fn send(server: &TestServer, key: &str, body: Value) -> reqwest::Response {
    server
        .client
        .post(format!("{}/v1/messages", server.url))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ask(text: &str) -> Value {
    json!({"model": "scripted-1", "max_tokens": 50, "messages": user(text)})
}

fn today() -> String {
    let now = unix_now();
    rfc3339(now - now % 86_400)
}

/// The start of the minute `n` minutes ago: a window that holds more than
/// `n` minute buckets whatever the time of day (a test run just after
/// midnight has only a few minutes since `today()`).
fn minutes_ago(n: u64) -> String {
    let now = unix_now();
    rfc3339(now - now % 60 - n * 60)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn sum(report: &Value, field: &str) -> u64 {
    report["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .map(|r| r[field].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_usage_report_sums_exactly_what_the_responses_reported() {
    let server = TestServer::start(hello()).await;
    let alpha = key_in(&server, "alpha");
    let beta = key_in(&server, "beta");
    let mut expected: HashMap<&str, (u64, u64)> = HashMap::new();
    for (i, (name, key)) in [("alpha", &alpha), ("beta", &beta), ("alpha", &alpha)]
        .into_iter()
        .enumerate()
    {
        let m: Value = send(&server, &key.secret, ask(&"word ".repeat(i + 1)))
            .await
            .json()
            .await
            .unwrap();
        let entry = expected.entry(name).or_default();
        entry.0 += m["usage"]["input_tokens"].as_u64().unwrap();
        entry.1 += m["usage"]["output_tokens"].as_u64().unwrap();
    }
    // A streamed reply is recorded too, before its `message_stop` is sent.
    let mut streamed = ask("stream please");
    streamed["stream"] = json!(true);
    let body = send(&server, &beta.secret, streamed)
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&body);
    let start = &events[0].1["message"]["usage"];
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1["usage"];
    let entry = expected.entry("beta").or_default();
    entry.0 += start["input_tokens"].as_u64().unwrap();
    entry.1 += delta["output_tokens"].as_u64().unwrap();
    // Token counting is not billed.
    server
        .client
        .post(format!("{}/v1/messages/count_tokens", server.url))
        .header("x-api-key", &alpha.secret)
        .json(&json!({"model": "scripted-1", "messages": user("count me")}))
        .send()
        .await
        .unwrap();

    let path = format!(
        "/v1/organizations/usage_report/messages?starting_at={}&group_by[]=workspace_id&group_by[]=api_key_id",
        today()
    );
    let report = server.admin_json(server.admin_get(&path)).await;
    assert_eq!(report["has_more"], false);
    let bucket = &report["data"][0];
    assert!(bucket["starting_at"]
        .as_str()
        .unwrap()
        .ends_with("T00:00:00Z"));
    let results = bucket["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{report}");
    for (name, key) in [("alpha", &alpha), ("beta", &beta)] {
        let row = results
            .iter()
            .find(|r| r["api_key_id"] == key.key.id.as_str())
            .unwrap();
        assert_eq!(
            row["workspace_id"],
            key.key.workspace_id.clone().unwrap().as_str()
        );
        assert_eq!(row["model"], Value::Null, "not grouped by model");
        assert_eq!(
            row["uncached_input_tokens"].as_u64().unwrap(),
            expected[name].0,
            "{name}"
        );
        assert_eq!(
            row["output_tokens"].as_u64().unwrap(),
            expected[name].1,
            "{name}"
        );
        assert_eq!(row["cache_creation"]["ephemeral_5m_input_tokens"], 0);
        assert_eq!(row["cache_read_input_tokens"], 0);
    }

    // Filters and minute buckets: every minute of the window is listed.
    let minutes = server
        .admin_json(server.admin_get(&format!(
            "/v1/organizations/usage_report/messages?starting_at={}&bucket_width=1m&limit=5&workspace_ids[]={}&group_by[]=model",
            minutes_ago(10),
            alpha.key.workspace_id.clone().unwrap()
        )))
        .await;
    assert_eq!(minutes["data"].as_array().unwrap().len(), 5);
    assert_eq!(minutes["has_more"], true);
    assert!(minutes["next_page"].as_str().unwrap().starts_with("page_"));
    let all_minutes = server
        .admin_json(server.admin_get(&format!(
            "/v1/organizations/usage_report/messages?starting_at={}&bucket_width=1m&limit=1440&workspace_ids[]={}&group_by[]=model",
            minutes_ago(10),
            alpha.key.workspace_id.clone().unwrap()
        )))
        .await;
    assert_eq!(
        sum(&all_minutes, "uncached_input_tokens"),
        expected["alpha"].0
    );
    let model_row = all_minutes["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .next()
        .unwrap();
    assert_eq!(model_row["model"], "scripted-1");
}

#[tokio::test]
async fn bad_report_parameters_are_400s_that_name_the_parameter() {
    let server = TestServer::start(hello()).await;
    for (query, parameter) in [
        ("", "starting_at"),
        ("starting_at=yesterday", "starting_at"),
        (
            "starting_at=2026-01-01T00:00:00Z&bucket_width=2h",
            "bucket_width",
        ),
        (
            "starting_at=2026-01-01T00:00:00Z&bucket_width=1d&limit=32",
            "limit",
        ),
        (
            "starting_at=2026-01-01T00:00:00Z&group_by[]=color",
            "group_by",
        ),
        (
            "starting_at=2026-01-01T00:00:00Z&service_tiers[]=gold",
            "service_tiers",
        ),
        ("starting_at=2026-01-01T00:00:00Z&page=bogus", "page"),
        (
            "starting_at=2026-01-02T00:00:00Z&ending_at=2026-01-01T00:00:00Z",
            "ending_at",
        ),
    ] {
        let response = server
            .admin_get(&format!("/v1/organizations/usage_report/messages?{query}"))
            .send()
            .await
            .unwrap();
        let message = assert_error(response, 400, "invalid_request_error").await;
        assert!(
            message.starts_with(&format!("{parameter}:")),
            "{query}: {message}"
        );
    }
    let response = server
        .admin_get("/v1/organizations/cost_report?starting_at=2026-01-01T00:00:00Z&bucket_width=1h")
        .send()
        .await
        .unwrap();
    let message = assert_error(response, 400, "invalid_request_error").await;
    assert!(message.starts_with("bucket_width:"), "{message}");
}

fn priced(input: f64, output: f64) -> Prices {
    Prices {
        default: None,
        models: HashMap::from([("scripted-1".to_owned(), Price::new(input, output))]),
    }
}

#[tokio::test]
async fn the_cost_report_prices_the_ledger_to_the_cent() {
    let server = TestServer::start_with(hello(), |s| {
        let store = s.store.clone().unwrap();
        s.with_store(store, priced(3_000.0, 15_000.0), SpendLimits::default())
            .unwrap()
    })
    .await;
    let mut cents = 0.0;
    for text in ["one", "two two", "three three three"] {
        let m: Value = server.messages(ask(text)).await.json().await.unwrap();
        let input = m["usage"]["input_tokens"].as_f64().unwrap();
        let output = m["usage"]["output_tokens"].as_f64().unwrap();
        cents += (input * 3_000.0 + output * 15_000.0) / 1e6 * 100.0;
    }
    let report = server
        .admin_json(server.admin_get(&format!(
            "/v1/organizations/cost_report?starting_at={}",
            today()
        )))
        .await;
    let total: f64 = report["data"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        (total - cents).abs() < 0.01,
        "report {total} vs responses {cents}"
    );
    assert_eq!(report["data"][0]["results"][0]["currency"], "USD");

    let detailed = server
        .admin_json(server.admin_get(&format!(
            "/v1/organizations/cost_report?starting_at={}&group_by[]=description",
            today()
        )))
        .await;
    let lines = detailed["data"][0]["results"].as_array().unwrap();
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l["token_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"uncached_input_tokens") && types.contains(&"output_tokens"),
        "{types:?}"
    );
    assert!(lines
        .iter()
        .all(|l| l["model"] == "scripted-1" && l["cost_type"] == "tokens"));
    let detailed_total: f64 = lines
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((detailed_total - cents).abs() < 0.01);
}

#[tokio::test]
async fn a_spend_cap_trips_for_its_workspace_only_and_holds_across_a_restart_of_the_tracker() {
    let limits = SpendLimits {
        organization: None,
        workspaces: HashMap::from([("capped".to_owned(), 0.01)]),
    };
    // $10,000 per million input tokens: a few tokens pass one cent.
    let server = TestServer::start_with(hello(), move |s| {
        let store = s.store.clone().unwrap();
        s.with_store(store, priced(10_000.0, 0.0), limits).unwrap()
    })
    .await;
    let capped = key_in(&server, "capped");
    let free = key_in(&server, "free");
    assert_eq!(
        send(&server, &capped.secret, ask("spend")).await.status(),
        200
    );
    let refused = send(&server, &capped.secret, ask("spend more")).await;
    let message = assert_error(refused, 400, "invalid_request_error").await;
    assert!(
        message.contains("usage limits") && message.contains("capped"),
        "{message}"
    );
    assert_eq!(
        send(&server, &free.secret, ask("still fine"))
            .await
            .status(),
        200
    );

    // A tracker seeded from the ledger (as at start-up) still refuses.
    let tracker = missive_server::spend::SpendTracker::new(
        priced(10_000.0, 0.0),
        SpendLimits {
            organization: None,
            workspaces: HashMap::from([("capped".to_owned(), 0.01)]),
        },
    );
    tracker.load(server.store.as_ref()).unwrap();
    assert!(tracker
        .check(capped.key.workspace_id.as_deref().unwrap(), "capped")
        .await
        .is_err());
}

#[tokio::test]
async fn the_kill_switch_stops_a_workspace_or_a_model_at_once() {
    let server = TestServer::start(hello()).await;
    let a = key_in(&server, "a");
    let b = key_in(&server, "b");
    let a_id = a.key.workspace_id.clone().unwrap();
    server
        .store
        .set_kill_switch(Some(&a_id), None, true)
        .unwrap();
    let refused = send(&server, &a.secret, ask("hi")).await;
    let message = assert_error(refused, 403, "permission_error").await;
    assert!(message.contains("kill switch"), "{message}");
    assert_eq!(send(&server, &b.secret, ask("hi")).await.status(), 200);
    server
        .store
        .set_kill_switch(Some(&a_id), None, false)
        .unwrap();
    assert_eq!(send(&server, &a.secret, ask("hi")).await.status(), 200);
    // By model, asked for by alias or by id.
    server
        .store
        .set_kill_switch(None, Some("scripted-1"), true)
        .unwrap();
    let mut by_alias = ask("hi");
    by_alias["model"] = json!("claude-sonnet-4-5");
    assert_error(
        send(&server, &b.secret, by_alias).await,
        403,
        "permission_error",
    )
    .await;
}

#[tokio::test]
async fn workspaces_are_kept_apart_in_limits_and_usage() {
    let limits = Limits {
        requests_per_minute: 1,
        input_tokens_per_minute: 100_000,
        output_tokens_per_minute: 100_000,
    };
    let server = TestServer::start_with(hello(), move |s| {
        s.with_rate_limits(RateLimiter::new(limits, HashMap::new()))
    })
    .await;
    let a = key_in(&server, "a");
    let b = key_in(&server, "b");
    assert_eq!(send(&server, &a.secret, ask("hi")).await.status(), 200);
    assert_error(
        send(&server, &a.secret, ask("hi")).await,
        429,
        "rate_limit_error",
    )
    .await;
    // Workspace a's exhausted bucket is not b's.
    assert_eq!(send(&server, &b.secret, ask("hi")).await.status(), 200);
    let report = server
        .admin_json(server.admin_get(&format!(
            "/v1/organizations/usage_report/messages?starting_at={}&group_by[]=workspace_id",
            today()
        )))
        .await;
    let rows = report["data"][0]["results"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2,
        "one row per workspace, the refused request unbilled: {report}"
    );
    // Workspace keys cannot read any of it.
    let refused = server
        .client
        .get(format!(
            "{}/v1/organizations/usage_report/messages?starting_at={}",
            server.url,
            today()
        ))
        .header("x-api-key", &a.secret)
        .send()
        .await
        .unwrap();
    assert_error(refused, 403, "permission_error").await;
}
