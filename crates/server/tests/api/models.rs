use serde_json::json;

use super::common::{assert_error, hello, TestServer};

#[tokio::test]
async fn list_and_retrieve_by_id_and_alias() {
    let server = TestServer::start(hello()).await;
    let page: serde_json::Value = server
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], false);
    assert_eq!(page["first_id"], "scripted-1");
    assert_eq!(page["last_id"], "scripted-1");
    let model = &page["data"][0];
    assert_eq!(model["type"], "model");
    assert_eq!(model["max_input_tokens"], 1000);
    assert_eq!(
        model["capabilities"]["image_input"],
        json!({"supported": false})
    );
    // The server cites and reads PDFs for every model it runs.
    assert_eq!(
        model["capabilities"]["citations"],
        json!({"supported": true})
    );
    assert_eq!(
        model["capabilities"]["pdf_input"],
        json!({"supported": true})
    );
    let by_alias: serde_json::Value = server
        .get("/v1/models/claude-opus-4-8")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_alias["id"], "scripted-1");
}

#[tokio::test]
async fn exact_aliases_are_listed_beside_the_ids_they_name() {
    let server = TestServer::start_with(hello(), |mut state| {
        state.services_mut().models = std::sync::Arc::new(
            (*state.models)
                .clone()
                .with_alias("claude-sonnet-4-5", "scripted-1"),
        );
        state
    })
    .await;
    let page: serde_json::Value = server
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["scripted-1", "claude-sonnet-4-5"]);
    assert_eq!(page["data"][1]["max_input_tokens"], 1000);
    let alias: serde_json::Value = server
        .get("/v1/models/claude-sonnet-4-5")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alias["id"], "claude-sonnet-4-5");
    assert_eq!(
        alias["display_name"],
        "claude-sonnet-4-5 (alias of scripted-1)"
    );
}

#[tokio::test]
async fn unknown_model_and_bad_limit_are_rejected() {
    let server = TestServer::start(hello()).await;
    assert_error(
        server.get("/v1/models/gpt-4").send().await.unwrap(),
        404,
        "not_found_error",
    )
    .await;
    let msg = assert_error(
        server.get("/v1/models?limit=0").send().await.unwrap(),
        400,
        "invalid_request_error",
    )
    .await;
    assert!(msg.starts_with("limit"), "{msg}");
}

#[tokio::test]
async fn readiness_checks_the_store_and_the_models_without_a_key() {
    let server = super::common::TestServer::start(super::common::hello()).await;
    let response = reqwest::get(format!("{}/ready", server.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "checks": {"store": "ok", "models": "ok"}})
    );
    let live = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert_eq!(live.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    let server = super::common::TestServer::start(super::common::hello()).await;
    let _ = server
        .messages(serde_json::json!({"model": "scripted-1", "max_tokens": 5,
            "messages": super::common::user("hi")}))
        .await;
    // Workspace keys are refused: metrics name every workspace and its traffic.
    let refused = server.get("/metrics").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let anonymous = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let response = server
        .client
        .get(format!("{}/metrics", server.url))
        .header("x-api-key", super::common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    // Every series names its replica, beside its own labels.
    assert!(
        text.lines()
            .any(|line| line.starts_with("missive_http_requests_total{")
                && line.contains("route=\"messages\"")
                && line.contains("status=\"200\"")
                && line.contains("replica=\"")),
        "{text}"
    );
    assert!(text.contains("# TYPE missive_http_request_duration_seconds histogram"));
}
