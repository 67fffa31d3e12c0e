//! Extended thinking through the server: splitting, signatures, budgets, stream order.
//! The scripted reasoning backend writes a `<think>` thought the way a reasoning model does.

use serde_json::json;

use super::common::{assert_error, parse_sse, user, TestServer};
use missive_backend::scripted::ScriptedBackend;

fn thinker() -> ScriptedBackend {
    ScriptedBackend::new(
        "scripted-1",
        &[
            "<think>",
            "Two",
            " plus two",
            " is four.",
            "</think>",
            "\n\n",
            "It is",
            " 4.",
        ],
    )
    .reasoning()
}

fn thinking_request(stream: bool) -> serde_json::Value {
    json!({"model": "scripted-1", "max_tokens": 2048, "stream": stream, "messages": user("2+2?"),
           "thinking": {"type": "enabled", "budget_tokens": 1024}})
}

#[tokio::test]
async fn stream_sends_the_thought_then_its_signature_then_the_answer() {
    let server = TestServer::start(thinker()).await;
    let response = server.messages(thinking_request(true)).await;
    assert_eq!(response.status(), 200);
    let events = parse_sse(&response.text().await.unwrap());
    let shape: Vec<String> = events
        .iter()
        .map(|(name, data)| match name.as_str() {
            "content_block_delta" => data["delta"]["type"].as_str().unwrap().to_owned(),
            "content_block_start" => {
                format!("start:{}", data["content_block"]["type"].as_str().unwrap())
            }
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "message_start",
            "start:thinking",
            "ping",
            "thinking_delta",
            "thinking_delta",
            "thinking_delta",
            "signature_delta",
            "content_block_stop",
            "start:text",
            "text_delta",
            "text_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let delta = &events[12].1;
    assert_eq!(
        delta["usage"]["output_tokens_details"]["thinking_tokens"],
        3
    );
    assert_eq!(delta["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn a_signed_thought_echoed_back_is_accepted_and_a_tampered_one_is_refused() {
    let server = TestServer::start(thinker()).await;
    let message: serde_json::Value = server
        .messages(thinking_request(false))
        .await
        .json()
        .await
        .unwrap();
    let thought = &message["content"][0];
    assert_eq!(thought["type"], "thinking");
    assert_eq!(thought["thinking"], "Two plus two is four.");
    assert!(!thought["signature"].as_str().unwrap().is_empty());
    assert_eq!(
        message["content"][1],
        json!({"type": "text", "text": "It is 4.", "citations": null})
    );
    assert_eq!(
        message["usage"]["output_tokens_details"]["thinking_tokens"],
        3
    );

    let follow_up = |content: serde_json::Value| {
        json!({"model": "scripted-1", "max_tokens": 2048, "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": "And 3+3?"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024}})
    };
    let echoed = server.messages(follow_up(message["content"].clone())).await;
    assert_eq!(echoed.status(), 200);

    let mut tampered = message["content"].clone();
    tampered[0]["thinking"] = json!("Two plus two is five.");
    let refused = server.messages(follow_up(tampered)).await;
    let text = assert_error(refused, 400, "invalid_request_error").await;
    assert!(
        text.contains("messages.1.content.0") && text.contains("signature"),
        "{text}"
    );
}

#[tokio::test]
async fn the_budget_closes_the_thought_and_the_answer_follows() {
    let mut pieces = vec!["<think>".to_owned()];
    pieces.extend((0..1500).map(|i| format!(" step{i}")));
    pieces.extend(["</think>".to_owned(), "Done.".to_owned()]);
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = TestServer::start(ScriptedBackend::new("scripted-1", &refs).reasoning()).await;
    let message: serde_json::Value = server
        .messages(thinking_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        message["usage"]["output_tokens_details"]["thinking_tokens"],
        1024
    );
    let thought = message["content"][0]["thinking"].as_str().unwrap();
    assert!(
        thought.ends_with(" step1023"),
        "{}",
        &thought[thought.len() - 20..]
    );
    assert_eq!(message["content"][1]["text"], "Done.");
}

#[tokio::test]
async fn without_thinking_the_thought_is_not_shown_and_omitted_display_keeps_only_the_signature() {
    let server = TestServer::start(thinker()).await;
    let plain: serde_json::Value = server
        .messages(json!({"model": "scripted-1", "max_tokens": 100, "messages": user("2+2?")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        plain["content"],
        json!([{"type": "text", "text": "It is 4.", "citations": null}])
    );
    assert!(plain["usage"].get("output_tokens_details").is_none());

    let mut request = thinking_request(false);
    request["thinking"]["display"] = json!("omitted");
    let omitted: serde_json::Value = server.messages(request).await.json().await.unwrap();
    assert_eq!(omitted["content"][0]["type"], "thinking");
    assert_eq!(omitted["content"][0]["thinking"], "");
    assert!(!omitted["content"][0]["signature"]
        .as_str()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn effort_sets_the_thinking_budget_of_a_model_that_reasons() {
    let server = TestServer::start(thinker()).await;
    let with_effort = |effort: &str| {
        json!({"model": "scripted-1", "max_tokens": 2048, "messages": user("2+2?"),
               "output_config": {"effort": effort}})
    };
    let m: serde_json::Value = server
        .messages(with_effort("low"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["content"][0]["type"], "thinking", "{m}");
    assert_eq!(m["content"][0]["thinking"], "Two plus two is four.");
    // Thinking switched off stays off whatever the effort.
    let mut off = with_effort("max");
    off["thinking"] = json!({"type": "disabled"});
    let m: serde_json::Value = server.messages(off).await.json().await.unwrap();
    assert_eq!(m["content"][0]["type"], "text", "{m}");
    let bad = server.messages(with_effort("extreme")).await;
    let message = assert_error(bad, 400, "invalid_request_error").await;
    assert!(message.starts_with("output_config.effort"), "{message}");

    // A model that cannot reason answers, and says the effort was ignored.
    let plain = TestServer::start(super::common::hello()).await;
    let response = plain.messages(with_effort("high")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-missive-thinking"],
        "ignored; the model cannot reason"
    );
}

#[tokio::test]
async fn clear_thinking_drops_all_but_the_kept_turns_and_reports_what_it_cleared() {
    let server = TestServer::start(thinker()).await;
    let first: serde_json::Value = server
        .messages(thinking_request(false))
        .await
        .json()
        .await
        .unwrap();
    let signed = first["content"].clone();
    let history = json!([
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": signed},
        {"role": "user", "content": "Again: 2+2?"},
        {"role": "assistant", "content": signed},
        {"role": "user", "content": "And 3+3?"}]);
    let with_edit = |keep: serde_json::Value| {
        json!({"model": "scripted-1", "max_tokens": 2048, "messages": history,
               "thinking": {"type": "enabled", "budget_tokens": 1024},
               "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": keep}]}})
    };

    let kept: serde_json::Value = server
        .messages(with_edit(json!("all")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        kept["context_management"]["applied_edits"],
        json!([]),
        "{kept}"
    );
    let cut: serde_json::Value = server
        .messages(with_edit(json!({"type": "thinking_turns", "value": 1})))
        .await
        .json()
        .await
        .unwrap();
    let applied = &cut["context_management"]["applied_edits"][0];
    assert_eq!(applied["type"], "clear_thinking_20251015", "{cut}");
    assert_eq!(applied["cleared_thinking_turns"], 1);
    let cleared = applied["cleared_input_tokens"].as_u64().unwrap();
    assert!(cleared > 0, "{cut}");
    assert_eq!(
        cut["usage"]["input_tokens"].as_u64().unwrap() + cleared,
        kept["usage"]["input_tokens"].as_u64().unwrap()
    );
}
