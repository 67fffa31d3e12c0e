use serde_json::json;

use super::common::{hello, user, TestServer};

#[tokio::test]
async fn create_returns_a_complete_message_with_ids_and_usage() {
    let server = TestServer::start(hello()).await;
    let response = server
        .messages(json!({"model": "scripted-1", "max_tokens": 50, "messages": user("hi there")}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let m: serde_json::Value = response.json().await.unwrap();
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(
        m["content"],
        json!([{"type": "text", "text": "Hello there, friend!", "citations": null}])
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["stop_sequence"], json!(null));
    assert_eq!(m["usage"]["input_tokens"], 3);
    assert_eq!(m["usage"]["output_tokens"], 4);
    assert_eq!(m["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(m["usage"]["cache_creation"]["ephemeral_5m_input_tokens"], 0);
    assert_eq!(m["usage"]["service_tier"], "standard");
}

#[tokio::test]
async fn alias_resolves_and_response_echoes_requested_name() {
    let server = TestServer::start(hello()).await;
    let m: serde_json::Value = server
        .messages(json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": user("hi")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["model"], "claude-sonnet-4-5");
}

#[tokio::test]
async fn max_tokens_cuts_the_reply() {
    let server = TestServer::start(hello()).await;
    let m: serde_json::Value = server
        .messages(json!({"model": "scripted-1", "max_tokens": 2, "messages": user("hi")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["content"][0]["text"], "Hello there");
    assert_eq!(m["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn stop_sequence_is_reported_and_not_emitted() {
    let server = TestServer::start(hello()).await;
    let m: serde_json::Value = server
        .messages(json!({"model": "scripted-1", "max_tokens": 50, "stop_sequences": ["friend"], "messages": user("hi")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["stop_reason"], "stop_sequence");
    assert_eq!(m["stop_sequence"], "friend");
    assert_eq!(m["content"][0]["text"], "Hello there, ");
}

#[tokio::test]
async fn beta_query_and_bearer_auth_are_accepted() {
    let server = TestServer::start(hello()).await;
    let response = server
        .client
        .post(format!("{}/v1/messages?beta=true", server.url))
        .header("authorization", format!("Bearer {}", super::common::KEY))
        .header("anthropic-beta", "claude-code-20250219,made-up-beta")
        .json(&json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn count_tokens_equals_usage_of_a_real_call() {
    let server = TestServer::start(hello()).await;
    let body =
        json!({"model": "scripted-1", "system": "be brief", "messages": user("one two three")});
    let counted: serde_json::Value = server
        .post("/v1/messages/count_tokens")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut create = body.clone();
    create["max_tokens"] = json!(5);
    let m: serde_json::Value = server.messages(create).await.json().await.unwrap();
    assert_eq!(counted["input_tokens"], m["usage"]["input_tokens"]);
    assert_eq!(counted["input_tokens"], 6);
}

#[tokio::test]
async fn stored_key_works_until_revoked() {
    use missive_store::{KeyKind, KeyStatus, Store};
    let server = TestServer::start(hello()).await;
    let key = server
        .store
        .create_api_key("t", KeyKind::Standard, None)
        .unwrap();
    let send = || {
        server
            .client
            .post(format!("{}/v1/messages", server.url))
            .header("x-api-key", key.secret.clone())
            .json(&json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    server
        .store
        .update_api_key(&key.key.id, None, Some(KeyStatus::Inactive))
        .unwrap();
    super::common::assert_error(send().await.unwrap(), 401, "authentication_error").await;
}

#[tokio::test]
async fn thinking_on_a_model_that_cannot_reason_runs_and_says_it_was_ignored() {
    let server = TestServer::start(hello()).await;
    let response = server
        .messages(
            json!({"model": "scripted-1", "max_tokens": 2048, "messages": user("hi"),
            "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["x-missive-thinking"]
        .to_str()
        .unwrap()
        .starts_with("ignored"));
    let m: serde_json::Value = response.json().await.unwrap();
    assert_eq!(m["content"][0]["type"], "text");

    let plain = server
        .messages(json!({"model": "scripted-1", "max_tokens": 20, "messages": user("hi")}))
        .await;
    assert!(plain.headers().get("x-missive-thinking").is_none());

    let too_small = server
        .messages(
            json!({"model": "scripted-1", "max_tokens": 2048, "messages": user("hi"),
            "thinking": {"type": "enabled", "budget_tokens": 100}}),
        )
        .await;
    assert_eq!(too_small.status(), 400);
    let body: serde_json::Value = too_small.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("budget_tokens"));
}
