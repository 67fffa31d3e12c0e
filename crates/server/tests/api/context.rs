//! Context management and compaction over HTTP: what the edits report, what the model
//! then reads, and the compaction block's round trip.

use serde_json::{json, Value};

use super::common::{hello, parse_sse, TestServer};

/// An agent history: `calls` tool uses, each answered with a 50-word result.
fn agent_history(calls: usize) -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": "Start the task."})];
    for i in 0..calls {
        messages.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": format!("toolu_{i}"), "name": "read", "input": {"n": i}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": "word ".repeat(50)}]}));
    }
    messages
}

/// What a compaction of [`agent_history`] reads when the model writes "Hello there, friend!".
const SUMMARY: &str =
    "What the user wrote, quoted:\n- Start the task.\n\nSummary:\nHello there, friend!";

fn tools() -> Value {
    json!([{"name": "read", "input_schema": {"type": "object"}}])
}

async fn json_of(server: &TestServer, body: Value) -> Value {
    let response = server.messages(body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn clear_tool_uses_reports_what_it_cleared_and_the_model_reads_less() {
    let server = TestServer::start(hello()).await;
    let plain = json!({"model": "scripted-1", "max_tokens": 20, "tools": tools(), "messages": agent_history(5)});
    let before = json_of(&server, plain.clone()).await;
    let mut edited = plain.clone();
    edited["context_management"] = json!({"edits": [{"type": "clear_tool_uses_20250919",
        "trigger": {"type": "input_tokens", "value": 100}, "keep": {"type": "tool_uses", "value": 1}}]});
    let after = json_of(&server, edited.clone()).await;
    let applied = &after["context_management"]["applied_edits"];
    assert_eq!(applied[0]["type"], "clear_tool_uses_20250919");
    assert_eq!(applied[0]["cleared_tool_uses"], 4);
    let saved = applied[0]["cleared_input_tokens"].as_u64().unwrap();
    let read = |m: &Value| m["usage"]["input_tokens"].as_u64().unwrap();
    assert!(saved > 0);
    assert_eq!(read(&before) - read(&after), saved);
    assert!(
        before.get("context_management").is_none(),
        "only requests that ask get the field"
    );

    // Below its trigger the edit leaves the prompt alone, and says so with an empty list.
    edited["context_management"]["edits"][0]["trigger"]["value"] = json!(100_000);
    let untouched = json_of(&server, edited.clone()).await;
    assert_eq!(untouched["context_management"]["applied_edits"], json!([]));
    assert_eq!(read(&untouched), read(&before));

    // count_tokens applies the same edits and reports the count before them.
    edited["context_management"]["edits"][0]["trigger"]["value"] = json!(100);
    let mut count = edited.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let counted: Value = server
        .post("/v1/messages/count_tokens")
        .json(&count)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["input_tokens"].as_u64(), Some(read(&after)));
    assert_eq!(
        counted["context_management"]["original_input_tokens"].as_u64(),
        Some(read(&before))
    );
}

#[tokio::test]
async fn compaction_summarises_with_the_model_and_the_block_comes_back_in_place_of_the_turns() {
    let server = TestServer::start(hello()).await;
    let mut body = json!({"model": "scripted-1", "max_tokens": 20, "tools": tools(), "messages": agent_history(4),
        "context_management": {"edits": [{"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 50}}]}});
    let reply = json_of(&server, body.clone()).await;
    // The scripted model answers every request with the same words, the summary included;
    // the user's own messages are quoted before it.
    assert_eq!(
        reply["content"][0],
        json!({"type": "compaction", "content": SUMMARY})
    );
    assert_eq!(reply["content"][1]["type"], "text");
    assert_eq!(reply["stop_reason"], "end_turn");
    let iterations = reply["usage"]["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 2);
    assert_eq!(iterations[0]["type"], "compaction");
    assert_eq!(iterations[1]["type"], "message");
    assert!(
        iterations[0]["input_tokens"].as_u64().unwrap() > 200,
        "the summary read the whole conversation"
    );
    // The reply itself read only the summary turn.
    let restarted = reply["usage"]["input_tokens"].as_u64().unwrap();
    let summary_words = missive_backend::history::SUMMARY_PREAMBLE
        .split_whitespace()
        .count()
        + SUMMARY.split_whitespace().count();
    assert_eq!(restarted, summary_words as u64 + 1);
    assert_eq!(iterations[1]["input_tokens"].as_u64(), Some(restarted));

    // The next request sends the block back; everything before it is dropped.
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": reply["content"].clone()}));
    messages.push(json!({"role": "user", "content": "And now?"}));
    body["context_management"]["edits"][0]["trigger"]["value"] = json!(100_000);
    let next = json_of(&server, body).await;
    assert_eq!(next["content"][0]["type"], "text");
    // The summary turn, the reply after it, and the new question.
    let next_input = next["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(next_input, restarted + 3 + 1 + 2 + 1);
}

#[tokio::test]
async fn a_paused_compaction_and_the_compaction_parameter_answer_with_the_block_alone() {
    let server = TestServer::start(hello()).await;
    let paused = json_of(&server, json!({"model": "scripted-1", "max_tokens": 20, "messages": agent_history(3),
        "context_management": {"edits": [{"type": "compact_20260112", "pause_after_compaction": true,
            "trigger": {"type": "input_tokens", "value": 50}}]}}))
    .await;
    assert_eq!(paused["stop_reason"], "compaction");
    assert_eq!(paused["content"].as_array().unwrap().len(), 1);
    assert_eq!(paused["usage"]["iterations"].as_array().unwrap().len(), 1);
    assert_eq!(paused["usage"]["output_tokens"], 0);

    let response = server
        .messages(json!({"model": "scripted-1", "max_tokens": 20, "stream": true, "messages": agent_history(3),
            "compaction": {"type": "summarize", "instructions": "Keep the code word."}}))
        .await;
    let events = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].1["content_block"]["type"], "compaction");
    assert_eq!(
        events[3].1["delta"],
        json!({"type": "compaction_delta", "content": SUMMARY})
    );
    assert_eq!(events[5].1["delta"]["stop_reason"], "compaction");

    let both = server
        .messages(
            json!({"model": "scripted-1", "max_tokens": 20, "messages": agent_history(1),
            "compaction": {"type": "summarize"}, "context_management": {"edits": []}}),
        )
        .await;
    super::common::assert_error(both, 400, "invalid_request_error").await;
}

#[tokio::test]
async fn deferred_tools_stay_out_until_referenced() {
    let server = TestServer::start(hello()).await;
    let tools = json!([{"name": "search", "input_schema": {"type": "object"}},
        {"name": "weather", "description": "word ".repeat(40), "defer_loading": true,
         "input_schema": {"type": "object"}}]);
    let count = |messages: Value| {
        let body = json!({"model": "scripted-1", "tools": tools, "messages": messages});
        let request = server.post("/v1/messages/count_tokens").json(&body).send();
        async move {
            let counted: Value = request.await.unwrap().json().await.unwrap();
            counted["input_tokens"].as_u64().unwrap()
        }
    };
    let history = |result: Value| {
        json!([{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": result}]}])
    };
    // The scripted model counts the words of tool descriptions: the deferred tool's 40
    // are read only once a reference loads it.
    let without = count(history(json!("nothing"))).await;
    let with = count(history(
        json!([{"type": "tool_reference", "tool_name": "weather"}]),
    ))
    .await;
    assert_eq!(with, without - 1 + 40);
}
