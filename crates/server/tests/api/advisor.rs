//! The advisor (`advisor_20260301`): when the model calls it, a second configured model
//! reads the conversation and advises; the model reads the advice and goes on. The advice's
//! tokens are an `advisor_message` step, billed at the advisor's model and kept out of the
//! top-level usage.

use missive_backend::scripted::ScriptedBackend;
use missive_store::{Dimension, Store, TokenCounts, UsageQuery};
use serde_json::{json, Value};

use super::common::{assert_error, block_types, parse_sse, TestServer};

const ADVICE: [&str; 4] = ["Check", " the", " units", " first."];

fn advisor_tool(settings: Value) -> Value {
    let mut tool =
        json!({"type": "advisor_20260301", "name": "advisor", "model": "scripted-advisor"});
    tool.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    tool
}

fn request(settings: Value) -> Value {
    json!({
        "model": "scripted-1",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Convert 3 miles to km."}],
        "tools": [advisor_tool(settings)],
    })
}

/// The model says three words and asks the advisor once; the advisor answers four words.
async fn advised_server() -> TestServer {
    let model = ScriptedBackend::new("scripted-1", &["Let", " me", " ask."])
        .calling_tool_once("advisor", json!({}));
    let advisor = ScriptedBackend::new("scripted-advisor", &ADVICE);
    TestServer::start_models(vec![model, advisor], |state| state).await
}

/// What the ledger holds for `model`, all requests together.
fn billed(server: &TestServer, model: &str) -> Option<TokenCounts> {
    let everything = UsageQuery {
        start_ms: 0,
        end_ms: i64::MAX,
        bucket_ms: i64::MAX / 2,
        group_by: vec![Dimension::Model],
        filters: vec![],
    };
    let rows = server.store.usage(&everything).unwrap();
    rows.into_iter()
        .find(|r| r.model.as_deref() == Some(model))
        .map(|r| r.tokens)
}

fn iterations(body: &Value) -> &Vec<Value> {
    body["usage"]["iterations"].as_array().unwrap()
}

#[tokio::test]
async fn the_model_reads_the_advice_and_the_advisor_tokens_are_its_own() {
    let server = advised_server().await;
    let response = server.messages(request(json!({}))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        block_types(&body),
        ["text", "server_tool_use", "advisor_tool_result", "text"],
        "{body}"
    );
    let content = body["content"].as_array().unwrap();
    let call = &content[1];
    assert_eq!(call["name"], "advisor");
    assert_eq!(call["input"], json!({}));
    assert_eq!(
        content[2],
        json!({"type": "advisor_tool_result", "tool_use_id": call["id"], "content": {
            "type": "advisor_result", "text": "Check the units first.", "stop_reason": "end_turn"}})
    );

    // Steps in order: the round that asked, the advice, the round that read it.
    let steps = iterations(&body);
    let kinds: Vec<&str> = steps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "advisor_message", "message"], "{body}");
    let (asked, advice, answered) = (&steps[0], &steps[1], &steps[2]);
    assert_eq!(advice["model"], "scripted-advisor");
    assert_eq!(advice["output_tokens"], 4);
    // The advisor read the conversation and what the model had said (three words), then
    // the ask: more than the first round read.
    assert!(
        advice["input_tokens"].as_u64().unwrap() > asked["input_tokens"].as_u64().unwrap() + 3,
        "{steps:?}"
    );
    // The second round read the first's three words in one turn, and the four words of
    // advice as the call's result in another: the scripted model counts a token a word and
    // one a turn.
    assert_eq!(
        answered["input_tokens"].as_u64().unwrap(),
        asked["input_tokens"].as_u64().unwrap() + 3 + 1 + 4 + 1
    );
    // Top-level counts are the model's own rounds; the advice is not among them.
    let usage = &body["usage"];
    for field in ["input_tokens", "output_tokens"] {
        assert_eq!(
            usage[field].as_u64().unwrap(),
            asked[field].as_u64().unwrap() + answered[field].as_u64().unwrap(),
            "{field}"
        );
    }

    // The ledger bills each model its own tokens, under the one request.
    let billed = |model: &str| {
        let row = billed(&server, model).unwrap_or_else(|| panic!("no ledger row for {model}"));
        (row.uncached_input, row.output)
    };
    assert_eq!(
        billed("scripted-advisor"),
        (
            advice["input_tokens"].as_u64().unwrap(),
            advice["output_tokens"].as_u64().unwrap()
        )
    );
    assert_eq!(
        billed("scripted-1"),
        (
            usage["input_tokens"].as_u64().unwrap(),
            usage["output_tokens"].as_u64().unwrap()
        )
    );
}

#[tokio::test]
async fn streamed_advice_comes_in_the_same_blocks_and_steps() {
    let server = advised_server().await;
    let mut body = request(json!({}));
    body["stream"] = json!(true);
    let response = server.messages(body).await;
    assert_eq!(response.status(), 200);
    let events = parse_sse(&response.text().await.unwrap());
    let started: Vec<&str> = events
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        started,
        ["text", "server_tool_use", "advisor_tool_result", "text"]
    );
    let (_, delta) = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    let kinds: Vec<&str> = delta["usage"]["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["message", "advisor_message", "message"]);
}

#[tokio::test]
async fn advice_cut_at_the_tools_max_tokens_says_so() {
    let server = advised_server().await;
    let response = server.messages(request(json!({"max_tokens": 2}))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["content"][2]["content"],
        json!({"type": "advisor_result", "text": "Check the", "stop_reason": "max_tokens"})
    );
    assert_eq!(iterations(&body)[1]["output_tokens"], 2);
}

#[tokio::test]
async fn calls_past_max_uses_are_result_errors() {
    // This model asks on every round: the second ask is past `max_uses`.
    let model = ScriptedBackend::new("scripted-1", &["Asking."]).calling_tool("advisor", json!({}));
    let advisor = ScriptedBackend::new("scripted-advisor", &ADVICE);
    let server = TestServer::start_models(vec![model, advisor], |state| state).await;
    let response = server.messages(request(json!({"max_uses": 1}))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results: Vec<&Value> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "advisor_tool_result")
        .map(|b| &b["content"])
        .collect();
    assert!(results.len() >= 2, "{body}");
    assert_eq!(results[0]["type"], "advisor_result");
    for later in &results[1..] {
        assert_eq!(
            **later,
            json!({"type": "advisor_tool_result_error", "error_code": "max_uses_exceeded"})
        );
    }
    let advised = iterations(&body)
        .iter()
        .filter(|s| s["type"] == "advisor_message")
        .count();
    assert_eq!(advised, 1);
}

#[tokio::test]
async fn an_advisor_that_fails_is_a_result_error_and_the_model_goes_on() {
    let model = ScriptedBackend::new("scripted-1", &["Let", " me", " ask."])
        .calling_tool_once("advisor", json!({}));
    let advisor = ScriptedBackend::new("scripted-advisor", &ADVICE).with_capacity(0);
    let server = TestServer::start_models(vec![model, advisor], |state| state).await;
    let response = server.messages(request(json!({}))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["content"][2]["content"],
        json!({"type": "advisor_tool_result_error", "error_code": "overloaded"})
    );
    assert_eq!(body["content"][3]["type"], "text");
    assert_eq!(body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn bad_advisor_settings_are_400s_naming_the_field() {
    let server = advised_server().await;
    for (tool, field) in [
        (
            json!({"type": "advisor_20260301", "name": "advisor"}),
            "tools.0.model",
        ),
        (advisor_tool(json!({"name": "helper"})), "tools.0.name"),
        (
            advisor_tool(json!({"model": "no-such-model"})),
            "tools.0.model",
        ),
        (advisor_tool(json!({"max_tokens": 0})), "tools.0.max_tokens"),
        (
            advisor_tool(json!({"caching": {"type": "forever"}})),
            "tools.0.caching",
        ),
        (
            advisor_tool(json!({"temperature": 1})),
            "tools.0.temperature",
        ),
    ] {
        let mut body = request(json!({}));
        body["tools"] = json!([tool]);
        let message = assert_error(server.messages(body).await, 400, "invalid_request_error").await;
        assert!(message.starts_with(field), "{field}: {message}");
    }
}

#[tokio::test]
async fn advice_sent_back_is_read_as_the_model_read_it() {
    let server = advised_server().await;
    let body: Value = server
        .messages(request(json!({})))
        .await
        .json()
        .await
        .unwrap();
    let mut again = request(json!({}));
    again["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": body["content"]}));
    again["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": "Thanks."}));
    let count = |body: &Value| {
        let mut body = body.clone();
        body.as_object_mut().unwrap().remove("max_tokens");
        server.post("/v1/messages/count_tokens").json(&body).send()
    };
    let sent_back: Value = count(&again).await.unwrap().json().await.unwrap();
    // The same conversation with the advice's words removed reads four tokens fewer.
    let mut without = again.clone();
    without["messages"][1]["content"][2]["content"]["text"] = json!("");
    let without: Value = count(&without).await.unwrap().json().await.unwrap();
    assert_eq!(
        sent_back["input_tokens"].as_u64().unwrap(),
        without["input_tokens"].as_u64().unwrap() + 4,
        "{sent_back} {without}"
    );
}

#[tokio::test]
async fn advice_given_to_a_stream_the_client_left_is_billed() {
    let model = ScriptedBackend::new(
        "scripted-1",
        &["Let", " me", " ask.", " Then", " more", " words."],
    )
    .calling_tool_once("advisor", json!({}))
    .with_delay(std::time::Duration::from_millis(100));
    let advisor = ScriptedBackend::new("scripted-advisor", &ADVICE);
    let server = TestServer::start_models(vec![model, advisor], |state| state).await;
    let mut body = request(json!({}));
    body["stream"] = json!(true);
    let mut response = server.messages(body).await;
    let mut seen = String::new();
    while !seen.contains("advisor_tool_result") {
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended before the advice");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(response);
    let row =
        billed(&server, "scripted-advisor").expect("the advice was given before it was billed");
    assert_eq!(row.output, 4);
}

#[tokio::test]
async fn the_advice_counts_against_the_workspaces_token_rate_limits() {
    let limits = missive_server::limits::Limits {
        requests_per_minute: 10,
        input_tokens_per_minute: 10_000,
        output_tokens_per_minute: 5_000,
    };
    let model = ScriptedBackend::new("scripted-1", &["Let", " me", " ask."])
        .calling_tool_once("advisor", json!({}));
    let advisor = ScriptedBackend::new("scripted-advisor", &ADVICE);
    let server = TestServer::start_models(vec![model, advisor], |state| {
        state.with_rate_limits(missive_server::limits::RateLimiter::new(
            limits,
            Default::default(),
        ))
    })
    .await;
    let response = server.messages(request(json!({}))).await;
    assert_eq!(response.status(), 200);
    let remaining: u64 = response.headers()["anthropic-ratelimit-output-tokens-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    // The model's own output and the advice's; the bucket refills ~83 tokens a second.
    let spent = body["usage"]["output_tokens"].as_u64().unwrap() + 4;
    assert!(
        (spent - 2..=spent).contains(&(5_000 - remaining)),
        "{remaining} left after {spent}"
    );
}
