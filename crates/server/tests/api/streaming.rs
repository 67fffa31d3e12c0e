use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::common::{hello, parse_sse, user, TestServer};

#[tokio::test]
async fn stream_sends_events_in_claude_order_with_type_equal_to_event_name() {
    let server = TestServer::start(hello()).await;
    let response = server
        .messages(json!({"model": "scripted-1", "max_tokens": 50, "stream": true, "messages": user("hi")}))
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], json!(null));
    assert_eq!(start["usage"]["input_tokens"], 2);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": "", "citations": null})
    );
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello there, friend!");
    let delta = &events[8].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 4);
    assert_eq!(delta["usage"]["input_tokens"], 2);
}

#[tokio::test]
async fn failure_after_the_200_becomes_an_error_event() {
    let server = TestServer::start(hello().failing_after(2)).await;
    let response = server
        .messages(json!({"model": "scripted-1", "max_tokens": 50, "stream": true, "messages": user("hi")}))
        .await;
    assert_eq!(response.status(), 200);
    let events = parse_sse(&response.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        data,
        &json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
    );
}

#[tokio::test]
async fn disconnected_stream_stops_its_generation() {
    let backend = hello().with_delay(Duration::from_millis(300));
    let live = backend.live_generations();
    let server = TestServer::start(backend).await;
    let response = server
        .messages(json!({"model": "scripted-1", "max_tokens": 50, "stream": true, "messages": user("hi")}))
        .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    assert_eq!(live.load(Ordering::SeqCst), 1);
    drop(body);
    for _ in 0..50 {
        if live.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the generation kept running after the client left");
}

#[tokio::test]
async fn tool_use_streams_input_json_deltas_that_concatenate_to_the_input() {
    let input = json!({"location": "San Francisco, CA", "unit": "celsius", "note": "ünïcödé ✓"});
    let backend = super::common::hello().calling_tool("get_weather", input.clone());
    let server = TestServer::start(backend).await;
    let body = json!({"model": "scripted-1", "max_tokens": 50, "stream": true, "messages": user("weather?"),
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]});
    let events = parse_sse(&server.messages(body.clone()).await.text().await.unwrap());
    let start = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap();
    let index = start.1["index"].as_u64().unwrap();
    assert_eq!(index, 1, "text block first, then the tool call");
    assert!(start.1["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_"));
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let mut partial = String::new();
    let pieces: Vec<&str> = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["index"] == index)
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        pieces[0], "",
        "an empty first piece, as the Claude API sends"
    );
    assert!(pieces.len() >= 3, "the input comes in pieces: {pieces:?}");
    for piece in pieces {
        partial.push_str(piece);
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&partial).unwrap(),
        input
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    let mut plain = body;
    plain["stream"] = json!(false);
    let m: serde_json::Value = server.messages(plain).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["content"][1]["type"], "tool_use");
    assert_eq!(m["content"][1]["name"], "get_weather");
    assert_eq!(m["content"][1]["input"], input);
}
