//! Message Batches and Files over HTTP with the scripted backend: shapes, results, and
//! resources kept inside their workspace.

use std::time::Duration;

use missive_store::{KeyKind, NewApiKey, Store};
use serde_json::{json, Value};

use super::common::{assert_error, hello, TestServer, KEY};

fn key_in(server: &TestServer, workspace: &str) -> NewApiKey {
    let ws = server.store.create_workspace(workspace).unwrap();
    server
        .store
        .create_api_key(workspace, KeyKind::Standard, Some(&ws.id))
        .unwrap()
}

fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    server
        .client
        .request(method, format!("{}{path}", server.url))
        .header("x-api-key", key)
}

fn item(custom_id: &str) -> Value {
    json!({"custom_id": custom_id, "params": {"model": "scripted-1", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]}})
}

async fn ended(server: &TestServer, id: &str) -> Value {
    for _ in 0..200 {
        let batch: Value = call(
            server,
            reqwest::Method::GET,
            &format!("/v1/messages/batches/{id}"),
            KEY,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if batch["processing_status"] == "ended" {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("batch {id} did not end");
}

#[tokio::test]
async fn a_batch_has_the_claude_api_shape_and_streams_its_results() {
    let server = TestServer::start(hello()).await;
    let mut bad = item("broken");
    bad["params"]["stream"] = json!(true);
    let created: Value = call(&server, reqwest::Method::POST, "/v1/messages/batches", KEY)
        .json(&json!({"requests": [item("a"), item("b"), bad]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["type"], "message_batch");
    assert!(created["id"].as_str().unwrap().starts_with("msgbatch_"));
    assert_eq!(created["processing_status"], "in_progress");
    assert_eq!(created["request_counts"]["processing"], 3);
    assert_eq!(created["results_url"], Value::Null);
    for field in ["created_at", "expires_at"] {
        assert!(created[field].as_str().unwrap().ends_with('Z'), "{field}");
    }
    let id = created["id"].as_str().unwrap();
    let done = ended(&server, id).await;
    assert_eq!(
        done["request_counts"],
        json!({"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0, "expired": 0})
    );
    let url = done["results_url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let text = server
        .client
        .get(url)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["custom_id"], "a");
    assert_eq!(lines[0]["result"]["type"], "succeeded");
    assert_eq!(
        lines[0]["result"]["message"]["content"][0]["text"],
        "Hello there, friend!"
    );
    assert_eq!(
        lines[0]["result"]["message"]["usage"]["service_tier"],
        "batch"
    );
    assert_eq!(lines[2]["result"]["type"], "errored");
    assert_eq!(
        lines[2]["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );

    // Billed once per success, at the batch tier.
    let billed = server
        .store
        .usage(&missive_store::UsageQuery {
            start_ms: 0,
            end_ms: i64::MAX,
            bucket_ms: i64::MAX,
            group_by: vec![missive_store::Dimension::ServiceTier],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(billed.len(), 1);
    assert_eq!(billed[0].service_tier.as_deref(), Some("batch"));
}

#[tokio::test]
async fn malformed_batches_are_refused_naming_the_item() {
    let server = TestServer::start(hello()).await;
    for (requests, needle) in [
        (json!([]), "requests:"),
        (json!([item("dup"), item("dup")]), "requests.1.custom_id"),
        (json!([item("has space")]), "requests.0.custom_id"),
    ] {
        let response = call(&server, reqwest::Method::POST, "/v1/messages/batches", KEY)
            .json(&json!({"requests": requests}))
            .send()
            .await
            .unwrap();
        let message = assert_error(response, 400, "invalid_request_error").await;
        assert!(message.starts_with(needle), "{message}");
    }
}

#[tokio::test]
async fn batches_and_files_of_another_workspace_are_404() {
    let server = TestServer::start(hello()).await;
    let other = key_in(&server, "other");
    let batch: Value = call(
        &server,
        reqwest::Method::POST,
        "/v1/messages/batches",
        &other.secret,
    )
    .json(&json!({"requests": [item("x")]}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = batch["id"].as_str().unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"private".to_vec())
            .file_name("p.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let file: Value = call(&server, reqwest::Method::POST, "/v1/files", &other.secret)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(file["size_bytes"], 7);
    let file_id = file["id"].as_str().unwrap();
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/messages/batches/{id}")),
        (
            reqwest::Method::POST,
            format!("/v1/messages/batches/{id}/cancel"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/messages/batches/{id}"),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/messages/batches/{id}/results"),
        ),
        (reqwest::Method::GET, format!("/v1/files/{file_id}")),
        (reqwest::Method::GET, format!("/v1/files/{file_id}/content")),
        (reqwest::Method::DELETE, format!("/v1/files/{file_id}")),
    ] {
        let response = call(&server, method, &path, KEY).send().await.unwrap();
        assert_error(response, 404, "not_found_error").await;
    }
    let listed: Value = call(&server, reqwest::Method::GET, "/v1/messages/batches", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    let files: Value = call(&server, reqwest::Method::GET, "/v1/files", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(files["data"].as_array().unwrap().len(), 0);
    // The owner still sees both.
    let own = call(
        &server,
        reqwest::Method::GET,
        &format!("/v1/files/{file_id}/content"),
        &other.secret,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(own.bytes().await.unwrap().as_ref(), b"private");
}
