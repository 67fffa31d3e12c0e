//! One admission path: the batch worker, count_tokens and the OpenAI route refuse exactly
//! what `/v1/messages` refuses, for the same reason (issue 18).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use missive_server::policy::{Policies, Policy};
use missive_server::spend::{Prices, SpendLimits, SpendTracker};
use missive_store::{KeyKind, KeyStatus, NewApiKey, NewBatchRequest, Store, Workspace};
use serde_json::{json, Value};

use super::common::{hello, TestServer};

/// What makes a request refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    RevokedKey,
    ArchivedWorkspace,
    KillSwitch,
    SpendCap,
    Policy,
}

const SECRET_PROMPT: &str = "deploy with sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";

async fn server_for(refusal: Refusal) -> (TestServer, Workspace, NewApiKey) {
    let server = TestServer::start_with(hello(), move |mut state| {
        if let Refusal::SpendCap = refusal {
            state.services_mut().spend = Arc::new(SpendTracker::new(
                Prices::default(),
                SpendLimits {
                    organization: None,
                    workspaces: HashMap::from([("capped".to_owned(), 0.0)]),
                },
            ));
        }
        if let Refusal::Policy = refusal {
            state = state.with_policies(Policies {
                default: Policy {
                    refuse_credentials: true,
                    ..Policy::default()
                },
                ..Policies::default()
            });
        }
        state
    })
    .await;
    let workspace = server.store.create_workspace("capped").unwrap();
    let key = server
        .store
        .create_api_key("k", KeyKind::Standard, Some(&workspace.id))
        .unwrap();
    (server, workspace, key)
}

fn apply(server: &TestServer, workspace: &Workspace, key: &NewApiKey, refusal: Refusal) {
    match refusal {
        Refusal::RevokedKey => {
            server
                .store
                .update_api_key(&key.key.id, None, Some(KeyStatus::Inactive))
                .unwrap();
        }
        Refusal::ArchivedWorkspace => {
            server.store.archive_workspace(&workspace.id).unwrap();
        }
        Refusal::KillSwitch => server
            .store
            .set_kill_switch(Some(&workspace.id), None, true)
            .unwrap(),
        Refusal::SpendCap | Refusal::Policy => {}
    }
}

fn prompt(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Policy => SECRET_PROMPT,
        _ => "hello",
    }
}

/// The status and error type of a refusal, from a Claude or an OpenAI error body.
async fn refusal_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let error_type = body["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, error_type)
}

async fn via_batch(
    server: &TestServer,
    workspace: &Workspace,
    key: &NewApiKey,
    text: &str,
) -> Value {
    let params = json!({"model": "scripted-1", "max_tokens": 20,
        "messages": [{"role": "user", "content": text}]});
    let batch = server
        .store
        .create_batch(
            &workspace.id,
            &key.key.id,
            i64::MAX / 2,
            &[NewBatchRequest {
                custom_id: "only".into(),
                params: params.to_string(),
                refused: None,
            }],
        )
        .unwrap();
    for _ in 0..200 {
        let results = server.store.batch_results(&batch.id, -1, 10).unwrap();
        if let Some(result) = results.first() {
            return serde_json::from_str(&result.result).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the batch request never ran");
}

#[tokio::test]
async fn every_path_refuses_what_messages_refuses() {
    for refusal in [
        Refusal::RevokedKey,
        Refusal::ArchivedWorkspace,
        Refusal::KillSwitch,
        Refusal::SpendCap,
        Refusal::Policy,
    ] {
        let (server, workspace, key) = server_for(refusal).await;
        apply(&server, &workspace, &key, refusal);
        let text = prompt(refusal);
        let messages = json!({"model": "scripted-1", "max_tokens": 20,
            "messages": [{"role": "user", "content": text}]});
        let send = |path: &str, body: &Value| {
            server
                .client
                .post(format!("{}{path}", server.url))
                .header("x-api-key", &key.secret)
                .json(body)
                .send()
        };
        let expected = refusal_of(send("/v1/messages", &messages).await.unwrap()).await;
        assert!(
            expected.0 >= 400,
            "{refusal:?}: /v1/messages let it through"
        );
        let count = json!({"model": "scripted-1", "messages": [{"role": "user", "content": text}]});
        let counted = refusal_of(send("/v1/messages/count_tokens", &count).await.unwrap()).await;
        assert_eq!(counted, expected, "{refusal:?}: count_tokens");
        let chat = json!({"model": "scripted-1", "max_tokens": 20,
            "messages": [{"role": "user", "content": text}]});
        let openai = refusal_of(send("/v1/chat/completions", &chat).await.unwrap()).await;
        assert_eq!(openai, expected, "{refusal:?}: chat completions");
        let result = via_batch(&server, &workspace, &key, text).await;
        assert_eq!(result["type"], "errored", "{refusal:?}: batch {result}");
        assert_eq!(
            result["error"]["error"]["type"], expected.1,
            "{refusal:?}: batch {result}"
        );
    }
}

#[tokio::test]
async fn issue_18_a_batch_after_its_key_is_revoked_bills_nothing_more() {
    let (server, workspace, key) = server_for(Refusal::RevokedKey).await;
    apply(&server, &workspace, &key, Refusal::RevokedKey);
    let result = via_batch(&server, &workspace, &key, "hello").await;
    assert_eq!(result["type"], "errored", "{result}");
    let rows = server
        .store
        .usage(&missive_store::UsageQuery {
            start_ms: 0,
            end_ms: i64::MAX,
            bucket_ms: i64::MAX,
            group_by: vec![missive_store::Dimension::ApiKeyId],
            filters: vec![],
        })
        .unwrap();
    let billed: u64 = rows
        .iter()
        .filter(|r| r.api_key_id.as_deref() == Some(key.key.id.as_str()))
        .map(|r| r.tokens.uncached_input + r.tokens.output)
        .sum();
    assert_eq!(billed, 0, "{rows:?}");
}
