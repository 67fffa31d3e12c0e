use serde_json::json;

use super::common::{assert_error, hello, user, TestServer, KEY};

#[tokio::test]
async fn missing_and_wrong_keys_get_401() {
    let server = TestServer::start(hello()).await;
    let body = json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")});
    let url = format!("{}/v1/messages", server.url);
    let none = server.client.post(&url).json(&body).send().await.unwrap();
    assert_error(none, 401, "authentication_error").await;
    let wrong = server
        .client
        .post(&url)
        .header("x-api-key", "sk-ant-api03-nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(wrong, 401, "authentication_error").await;
}

#[tokio::test]
async fn invalid_bodies_get_400_naming_the_field() {
    let server = TestServer::start(hello()).await;
    let cases = [
        (
            json!({"model": "scripted-1", "messages": user("hi")}),
            "max_tokens: Field required",
        ),
        (
            json!({"model": "scripted-1", "max_tokens": 5, "messages": []}),
            "messages: at least one message is required",
        ),
        (
            json!({"model": "scripted-1", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "scripted-1", "max_tokens": 5, "temperature": 2.0, "messages": user("hi")}),
            "temperature",
        ),
        (
            json!({"model": "scripted-1", "max_tokens": 99999, "messages": user("hi")}),
            "max_tokens",
        ),
    ];
    for (body, expected) in cases {
        let msg = assert_error(server.messages(body).await, 400, "invalid_request_error").await;
        assert!(
            msg.starts_with(expected),
            "{msg} should start with {expected}"
        );
    }
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_get_400() {
    let server = TestServer::start(hello()).await;
    let bad_json = server
        .post("/v1/messages")
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let msg = assert_error(bad_json, 400, "invalid_request_error").await;
    assert!(msg.starts_with("invalid JSON"), "{msg}");
    let form = server
        .post("/v1/messages")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    let msg = assert_error(form, 400, "invalid_request_error").await;
    assert!(msg.contains("Content-Type"), "{msg}");
}

#[tokio::test]
async fn unknown_model_path_and_method_get_404_and_405() {
    let server = TestServer::start(hello()).await;
    let unknown = server
        .messages(json!({"model": "gpt-4o", "max_tokens": 5, "messages": user("hi")}))
        .await;
    assert_eq!(
        assert_error(unknown, 404, "not_found_error").await,
        "model: gpt-4o"
    );
    assert_error(
        server.get("/v1/nothing-here").send().await.unwrap(),
        404,
        "not_found_error",
    )
    .await;
    assert_error(
        server.get("/v1/messages").send().await.unwrap(),
        405,
        "invalid_request_error",
    )
    .await;
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let server = TestServer::start(hello()).await;
    let big = "x".repeat(33 * 1024 * 1024);
    let body = format!(
        r#"{{"model":"scripted-1","max_tokens":5,"messages":[{{"role":"user","content":"{big}"}}]}}"#
    );
    let response = server
        .post("/v1/messages")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "request_too_large").await;
}

#[tokio::test]
async fn prompt_over_the_context_window_gets_the_claude_wording() {
    let server = TestServer::start(hello().with_context_window(10)).await;
    let long = "word ".repeat(20);
    let msg = assert_error(
        server
            .messages(
                json!({"model": "scripted-1", "max_tokens": 5, "messages": user(long.trim())}),
            )
            .await,
        400,
        "invalid_request_error",
    )
    .await;
    assert_eq!(msg, "prompt is too long: 21 tokens > 10 maximum");
}

#[tokio::test]
async fn images_for_a_text_only_model_become_placeholders_unless_the_operator_rejects_them() {
    let body = json!({"model": "scripted-1", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "text", "text": "what is this"}]}]});
    let server = TestServer::start(hello()).await;
    let response = server.messages(body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-missive-images"],
        "replaced 1 with text placeholders; the model reads text only"
    );
    // The placeholder is what the model read: its words are in the prompt's count.
    let m: serde_json::Value = response.json().await.unwrap();
    let placeholder_words = missive_backend::history::IMAGE_PLACEHOLDER
        .split_whitespace()
        .count() as u64;
    assert_eq!(m["usage"]["input_tokens"], 3 + placeholder_words + 1);

    // With `images = "reject"` the image reaches the model as sent, unreplaced: the
    // engine refuses it (the conformance suite shows that); the scripted model ignores it.
    let strict = TestServer::start_with(hello(), |mut state| {
        state.services_mut().models =
            std::sync::Arc::new((*state.models).clone().rejecting_images("scripted-1"));
        state
    })
    .await;
    let response = strict.messages(body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-missive-images").is_none());
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-z_]{0,12}".prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "user",
                "assistant",
                "text",
                "image",
                "tool_use",
                "scripted-1",
                "claude-x"
            ])
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "model",
                        "max_tokens",
                        "messages",
                        "role",
                        "content",
                        "type",
                        "text",
                        "system",
                        "stream",
                        "stop_sequences",
                        "temperature",
                        "source"
                    ])
                    .prop_map(String::from),
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_bodies_never_get_a_5xx(value in json_value()) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let server = TestServer::start(hello()).await;
                let response = server
                    .post("/v1/messages")
                    .header("content-type", "application/json")
                    .body(value.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                prop_assert!(status == 200 || (400..500).contains(&status), "status {} for {}", status, value);
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let server = TestServer::start(hello()).await;
    let ok = server.get("/v1/models").send().await.unwrap();
    assert!(ok.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let _ = KEY;
}

#[tokio::test]
async fn a_full_queue_answers_529_overloaded_with_retry_after() {
    let backend = super::common::hello()
        .with_delay(std::time::Duration::from_millis(300))
        .with_capacity(1);
    let server = super::common::TestServer::start(backend).await;
    let body = serde_json::json!({"model": "scripted-1", "max_tokens": 50, "stream": true,
        "messages": super::common::user("hi")});
    // The first stream holds the only place until it ends.
    let running = server.messages(body.clone()).await;
    assert_eq!(running.status(), 200);
    let refused = server.messages(body).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = super::common::assert_error(refused, 529, "overloaded_error").await;
    assert!(message.contains("Overloaded"));
    drop(running);
}
