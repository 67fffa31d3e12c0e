//! Tool search (`tool_search_tool_regex_*`, `tool_search_tool_bm25_*`): the server searches
//! the request's deferred tools when the model calls it, the blocks come back as the SDK
//! types them, and the tools found load for the next round and in later requests.

use missive_backend::scripted::ScriptedBackend;
use serde_json::{json, Value};

use super::common::{assert_error, block_types, parse_sse, TestServer};

/// Words in the weather tool's description: the scripted model counts one token a word of
/// every tool description it is shown.
const WEATHER_WORDS: usize = 40;

fn tools() -> Value {
    json!([
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
        {"name": "get_weather", "description": "weather ".repeat(WEATHER_WORDS), "defer_loading": true,
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_stock_price", "description": "Latest price of a ticker.", "defer_loading": true,
         "input_schema": {"type": "object", "properties": {"ticker": {"type": "string"}}}}
    ])
}

fn request() -> Value {
    json!({
        "model": "scripted-1",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": tools(),
    })
}

async fn searching_server() -> TestServer {
    let backend = ScriptedBackend::new("scripted-1", &["Found", " it."])
        .calling_tool_once("tool_search_tool_regex", json!({"pattern": "weather"}));
    TestServer::start(backend).await
}

async fn count(server: &TestServer, body: &Value) -> i64 {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove("max_tokens");
    let response = server
        .post("/v1/messages/count_tokens")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["input_tokens"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_search_finds_deferred_tools_and_loads_them_for_the_next_round() {
    let server = searching_server().await;
    let first_round = count(&server, &request()).await;
    let response = server.messages(request()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        block_types(&body),
        ["text", "server_tool_use", "tool_search_tool_result", "text"],
        "{body}"
    );
    let content = body["content"].as_array().unwrap();
    let call = &content[1];
    assert_eq!(call["name"], "tool_search_tool_regex");
    assert!(call["id"].as_str().unwrap().starts_with("srvtoolu_"));
    assert_eq!(
        content[2],
        json!({"type": "tool_search_tool_result", "tool_use_id": call["id"], "content": {
            "type": "tool_search_tool_search_result",
            "tool_references": [{"type": "tool_reference", "tool_name": "get_weather"}]}})
    );
    assert_eq!(body["stop_reason"], "end_turn");
    // The second round was shown the weather tool, which the first was not: its prompt
    // is the first's, two turns (the text and call, then the result), the two words of
    // that text, and the tool's description.
    let input = body["usage"]["input_tokens"].as_i64().unwrap();
    assert_eq!(
        input,
        2 * first_round + 2 + 2 + WEATHER_WORDS as i64,
        "{body}"
    );

    // Sent back, the result keeps the tool loaded: it counts, where a search that found
    // nothing leaves it out.
    let mut later = request();
    later["messages"] = json!([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": content[..3]},
        {"role": "user", "content": "And in Bergen?"}
    ]);
    let loaded = count(&server, &later).await;
    later["messages"][1]["content"][2]["content"]["tool_references"] = json!([]);
    let not_loaded = count(&server, &later).await;
    // The empty result is read as its JSON, one word without spaces.
    assert_eq!(loaded - not_loaded, WEATHER_WORDS as i64 - 1);
}

#[tokio::test]
async fn a_stream_carries_the_search_and_its_result() {
    let server = searching_server().await;
    let mut body = request();
    body["stream"] = json!(true);
    let text = server.messages(body).await.text().await.unwrap();
    let events = parse_sse(&text);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| &data["content_block"])
        .collect();
    let types: Vec<&str> = starts.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["text", "server_tool_use", "tool_search_tool_result", "text"]
    );
    assert_eq!(
        starts[2]["content"]["tool_references"][0]["tool_name"],
        "get_weather"
    );
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn a_bad_pattern_is_a_result_error_and_the_model_goes_on() {
    let backend = ScriptedBackend::new("scripted-1", &["Sorry."])
        .calling_tool_once("tool_search_tool_regex", json!({"pattern": "(weather"}));
    let server = TestServer::start(backend).await;
    let body: Value = server.messages(request()).await.json().await.unwrap();
    let result = &body["content"][2];
    assert_eq!(result["type"], "tool_search_tool_result", "{body}");
    assert_eq!(result["content"]["type"], "tool_search_tool_result_error");
    assert_eq!(result["content"]["error_code"], "invalid_tool_input");
    assert_eq!(body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn a_tool_search_tool_is_checked_by_name_and_settings() {
    let server = searching_server().await;
    for (tool, says) in [
        (
            json!({"type": "tool_search_tool_bm25_20251119", "name": "search"}),
            "tools.0.name: Input should be 'tool_search_tool_bm25'",
        ),
        (
            json!({"type": "tool_search_tool_regex", "name": "tool_search_tool_regex", "max_uses": 2}),
            "tools.0.max_uses: Extra inputs are not permitted",
        ),
        (
            json!({"type": "tool_search_tool_regex", "name": "tool_search_tool_regex", "defer_loading": true}),
            "tools.0.defer_loading: the tool search tool cannot itself be deferred",
        ),
    ] {
        let mut body = request();
        body["tools"] = json!([tool]);
        let message = assert_error(server.messages(body).await, 400, "invalid_request_error").await;
        assert_eq!(message, says);
    }
}
