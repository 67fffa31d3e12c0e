//! Server tools (`web_fetch`, `web_search`) run between model rounds: the blocks, the
//! usage and the ledger, the round cap, and the address rules, against local HTTP servers.

use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::get;
use missive_backend::scripted::ScriptedBackend;
use missive_store::{Store, UsageQuery};
use missive_tools::web_search::SearchBackend;
use missive_tools::Toolbox;
use serde_json::{json, Value};

use super::common::{assert_error, block_types, parse_sse, TestServer};

const PAGE: &str = "<html><head><title>Otter facts</title></head><body><h1>Otters</h1><p>Sea otters hold hands while they sleep.</p></body></html>";

/// A local web site: a page, redirects (one leading inside), a search API, a large body.
async fn site() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/page", get(|| async { Html(PAGE) }))
        .route("/hop", get(|| async { Redirect::temporary("/page") }))
        .route(
            "/inside",
            get(move || async move {
                Redirect::temporary(&format!("http://127.0.0.2:{port}/page")).into_response()
            }),
        )
        .route("/big", get(|| async { "x".repeat(64 * 1024) }))
        .route(
            "/search",
            get(|| async {
                axum::Json(json!({"results": [
                    {"url": "https://otters.example/facts", "title": "Otter facts", "content": "Sea otters hold hands."},
                    {"url": "https://spam.example/otters", "title": "Buy otters", "content": "Cheap."}
                ]}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

fn toolbox(site: &str, max_rounds: u32) -> Toolbox {
    let mut toolbox = Toolbox {
        max_rounds,
        search: Some(SearchBackend::Searxng {
            url: format!("{site}/").parse().unwrap(),
        }),
        ..Toolbox::default()
    };
    toolbox.fetcher.private_hosts = vec!["127.0.0.1".into()];
    toolbox.fetcher.max_bytes = 16 * 1024;
    toolbox
}

async fn serve(backend: ScriptedBackend, site: &str, max_rounds: u32) -> TestServer {
    let toolbox = toolbox(site, max_rounds);
    TestServer::start_with(backend, move |state| state.with_server_tools(toolbox)).await
}

/// The server's ledger, all time in one row.
fn ledger(server: &TestServer) -> Vec<missive_store::UsageRow> {
    server
        .store
        .usage(&UsageQuery {
            start_ms: 0,
            end_ms: i64::MAX,
            bucket_ms: i64::MAX,
            group_by: vec![],
            filters: vec![],
        })
        .unwrap()
}

fn fetch_request(url: &str) -> Value {
    json!({
        "model": "scripted-1",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": format!("Summarise {url}")}],
        "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}],
    })
}

/// The `error_code` of each `web_fetch_tool_result` of a reply.
fn fetch_errors(body: &Value) -> Vec<String> {
    body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "web_fetch_tool_result")
        .map(|b| {
            b["content"]["error_code"]
                .as_str()
                .unwrap_or("ok")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_fetch_runs_between_rounds_and_is_counted_in_usage_and_the_ledger() {
    let site = site().await;
    let url = format!("{site}/hop");
    let backend = ScriptedBackend::new("scripted-1", &["They", " hold", " hands."])
        .calling_tool_once("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 5).await;
    let response = server.messages(fetch_request(&url)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // The scripted model writes its text, calls, then answers again after the result.
    assert_eq!(
        block_types(&body),
        ["text", "server_tool_use", "web_fetch_tool_result", "text"],
        "{body}"
    );
    let call = &body["content"][1];
    assert!(call["id"].as_str().unwrap().starts_with("srvtoolu_"));
    assert_eq!(call["input"]["url"], url.as_str());
    let result = &body["content"][2];
    assert_eq!(result["tool_use_id"], call["id"]);
    assert_eq!(result["content"]["type"], "web_fetch_result");
    // Redirects followed: the final URL is the page's.
    assert_eq!(result["content"]["url"], format!("{site}/page"));
    let document = &result["content"]["content"];
    assert_eq!(document["title"], "Otter facts");
    let text = document["source"]["data"].as_str().unwrap();
    assert!(
        text.contains("Sea otters hold hands while they sleep."),
        "{text}"
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["server_tool_use"]["web_fetch_requests"], 1);
    // Two rounds of output (three pieces and the call, then three pieces).
    assert_eq!(body["usage"]["output_tokens"], 7, "{body}");
    let rows = ledger(&server);
    assert_eq!(rows[0].tokens.web_fetch_requests, 1);
    assert_eq!(rows[0].tokens.output, 7);
}

#[tokio::test]
async fn a_fetched_page_with_citations_is_cited_like_a_document() {
    let site = site().await;
    let url = format!("{site}/page");
    let backend = ScriptedBackend::new(
        "scripted-1",
        &["Sea otters hold hands", " while they sleep."],
    )
    .calling_tool_once("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 5).await;
    let mut request = fetch_request(&url);
    request["tools"][0]["citations"] = json!({"enabled": true});
    let body: Value = server.messages(request).await.json().await.unwrap();
    let result = &body["content"][2];
    assert_eq!(
        result["content"]["content"]["citations"]["enabled"], true,
        "{body}"
    );
    let citation = &body["content"][3]["citations"][0];
    assert_eq!(citation["type"], "char_location", "{body}");
    assert_eq!(citation["document_index"], 0);
    assert_eq!(citation["document_title"], "Otter facts");
    let page = result["content"]["content"]["source"]["data"]
        .as_str()
        .unwrap();
    let quoted = citation["cited_text"].as_str().unwrap();
    assert!(
        page.contains(quoted) && quoted.contains("hold hands"),
        "{quoted}"
    );
}

#[tokio::test]
async fn a_stream_carries_the_call_and_result_blocks_in_order() {
    let site = site().await;
    let url = format!("{site}/page");
    let backend = ScriptedBackend::new("scripted-1", &["Done."])
        .calling_tool_once("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 5).await;
    let mut request = fetch_request(&url);
    request["stream"] = json!(true);
    let text = server.messages(request).await.text().await.unwrap();
    let events = parse_sse(&text);
    let starts: Vec<(u64, String)> = events
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| {
            (
                data["index"].as_u64().unwrap(),
                data["content_block"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        starts,
        [
            (0, "text".to_owned()),
            (1, "server_tool_use".to_owned()),
            (2, "web_fetch_tool_result".to_owned()),
            (3, "text".to_owned())
        ]
    );
    let input: String = events
        .iter()
        .filter(|(name, data)| name == "content_block_delta" && data["index"] == 1)
        .map(|(_, data)| data["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap()["url"],
        url.as_str()
    );
    let (_, delta) = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta["usage"]["server_tool_use"]["web_fetch_requests"], 1);
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn the_round_cap_pauses_the_turn_and_the_client_resumes_it() {
    let site = site().await;
    let url = format!("{site}/page");
    // A model that fetches in every round.
    let backend = ScriptedBackend::new("scripted-1", &["Again."])
        .calling_tool("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 2).await;
    let request = fetch_request(&url);
    let body: Value = server.messages(request.clone()).await.json().await.unwrap();
    assert_eq!(body["stop_reason"], "pause_turn", "{body}");
    assert_eq!(fetch_errors(&body), ["ok", "ok"]);
    assert_eq!(body["usage"]["server_tool_use"]["web_fetch_requests"], 2);
    // Resuming: the paused reply goes back as the assistant turn, server blocks and all.
    let mut resumed = request;
    resumed["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": body["content"]}));
    let response = server.messages(resumed).await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["stop_reason"], "pause_turn", "{again}");
}

#[tokio::test]
async fn max_uses_and_prior_context_are_enforced() {
    let site = site().await;
    let url = format!("{site}/page");
    let backend = ScriptedBackend::new("scripted-1", &["Again."])
        .calling_tool("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 3).await;
    let mut request = fetch_request(&url);
    request["tools"][0]["max_uses"] = json!(1);
    let body: Value = server.messages(request).await.json().await.unwrap();
    assert_eq!(
        fetch_errors(&body),
        ["ok", "max_uses_exceeded", "max_uses_exceeded"]
    );
    assert_eq!(body["usage"]["server_tool_use"]["web_fetch_requests"], 1);

    // A URL the model made up is not fetched.
    let made_up = format!("{site}/big");
    let backend = ScriptedBackend::new("scripted-1", &["Hm."])
        .calling_tool_once("web_fetch", json!({"url": made_up}));
    let server = serve(backend, &site, 3).await;
    let body: Value = server
        .messages(fetch_request(&format!("{site}/page")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetch_errors(&body), ["url_not_in_prior_context"]);
    assert!(
        body["usage"].get("server_tool_use").is_none()
            || body["usage"]["server_tool_use"]["web_fetch_requests"] == 0
    );
}

#[tokio::test]
async fn inside_addresses_are_refused_however_they_are_spelled_or_reached() {
    let site = site().await;
    let port = site.rsplit(':').next().unwrap();
    for (url, code) in [
        // A redirect from an allowed host to one inside.
        (format!("{site}/inside"), "url_not_allowed"),
        // 127.0.0.1 is the operator's (`private_hosts`); other inside addresses are not,
        // in any spelling.
        (format!("http://127.0.0.2:{port}/page"), "url_not_allowed"),
        (format!("http://localhost.:{port}/page"), "url_not_allowed"),
        (format!("http://2130706434:{port}/page"), "url_not_allowed"),
        (format!("http://0177.0.0.2:{port}/page"), "url_not_allowed"),
        (format!("http://0x7f.0.0.2:{port}/page"), "url_not_allowed"),
        (
            format!("http://[::ffff:127.0.0.2]:{port}/page"),
            "url_not_allowed",
        ),
        (
            format!("http://[::ffff:a00:1]:{port}/page"),
            "url_not_allowed",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "url_not_allowed",
        ),
        ("file:///etc/passwd".to_owned(), "url_not_allowed"),
        // Larger than the byte cap.
        (format!("{site}/big"), "content_too_large"),
    ] {
        let backend = ScriptedBackend::new("scripted-1", &["Hm."])
            .calling_tool_once("web_fetch", json!({"url": url}));
        let server = serve(backend, &site, 3).await;
        let body: Value = server
            .messages(fetch_request(&url))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(fetch_errors(&body), [code], "{url}: {body}");
    }
}

#[tokio::test]
async fn a_search_returns_results_filtered_by_domain_and_is_billed() {
    let site = site().await;
    let backend = ScriptedBackend::new("scripted-1", &["Sea otters", " hold hands."])
        .calling_tool_once("web_search", json!({"query": "otters"}));
    let server = serve(backend, &site, 3).await;
    let response = server
        .messages(json!({
            "model": "scripted-1",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Find otter facts"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "blocked_domains": ["spam.example"]}],
        }))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let result = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "web_search_tool_result")
        .unwrap();
    let results = result["content"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{result}");
    assert_eq!(results[0]["type"], "web_search_result");
    assert_eq!(results[0]["url"], "https://otters.example/facts");
    assert_eq!(results[0]["title"], "Otter facts");
    assert_eq!(body["usage"]["server_tool_use"]["web_search_requests"], 1);
    // The answer after the search cites the result it repeats; the text before it cannot.
    let texts: Vec<&Value> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .collect();
    assert!(texts[0]["citations"].is_null(), "{body}");
    let citation = &texts[1]["citations"][0];
    assert_eq!(citation["type"], "web_search_result_location", "{body}");
    assert_eq!(citation["url"], "https://otters.example/facts");
    assert_eq!(citation["title"], "Otter facts");
    assert_eq!(citation["cited_text"], "Sea otters hold hands.");
    assert!(citation["encrypted_index"].is_string());
    let report: Value = server
        .client
        .get(format!(
            "{}/v1/organizations/usage_report/messages?starting_at={}T00:00:00Z",
            server.url,
            time::OffsetDateTime::now_utc().date()
        ))
        .header("x-api-key", super::common::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let searches: u64 = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .map(|r| {
            r["server_tool_use"]["web_search_requests"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(searches, 1, "{report}");
}

#[tokio::test]
async fn a_search_without_a_search_service_is_refused_by_name() {
    let server = TestServer::start(ScriptedBackend::new("scripted-1", &["Hi."])).await;
    let response = server
        .messages(json!({
            "model": "scripted-1",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Find otters"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }))
        .await;
    let message = assert_error(response, 400, "invalid_request_error").await;
    assert!(
        message.starts_with("tools.0.type: `web_search_20250305` needs a search service"),
        "{message}"
    );
}

/// Sandboxed commands run one test at a time: they share the process cap of the user they
/// run as, and a fork bomb in one test would starve another's commands.
static SANDBOX: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server whose model runs one command in a sandboxed container (bubblewrap), with
/// tight limits so that the abuse cases end quickly.
async fn code_server(command: &str) -> (TestServer, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let toolbox = Toolbox {
        containers: Some(missive_tools::code_execution::Containers {
            root: root.path().to_path_buf(),
            idle: std::time::Duration::from_secs(3600),
            limits: missive_tools::sandbox::Limits {
                memory_bytes: 512 * 1024 * 1024,
                cpu_seconds: 5,
                wall: std::time::Duration::from_secs(3),
                processes: 32,
                file_bytes: 1024 * 1024,
            },
        }),
        ..Toolbox::default()
    };
    let backend = ScriptedBackend::new("scripted-1", &["Ran."])
        .calling_tool_once("bash_code_execution", json!({"command": command}));
    let server =
        TestServer::start_with(backend, move |state| state.with_server_tools(toolbox)).await;
    (server, root)
}

fn code_request(container: Option<&str>) -> Value {
    let mut request = json!({
        "model": "scripted-1",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Run it."}],
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
    });
    if let Some(id) = container {
        request["container"] = json!(id);
    }
    request
}

/// The first block of a reply of this type.
fn result_of<'a>(body: &'a Value, kind: &str) -> &'a Value {
    body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}: {body}"))
}

/// The `bash_code_execution_tool_result` content of a reply.
fn bash_result(body: &Value) -> Value {
    result_of(body, "bash_code_execution_tool_result")["content"].clone()
}

/// One request on a new server whose containers live under `root` (default limits), in
/// the container named, or a new one; the reply.
async fn run_in(
    root: &std::path::Path,
    backend: ScriptedBackend,
    container: Option<&str>,
) -> Value {
    let toolbox = Toolbox {
        containers: Some(missive_tools::code_execution::Containers {
            root: root.to_path_buf(),
            idle: std::time::Duration::from_secs(3600),
            limits: missive_tools::sandbox::Limits::default(),
        }),
        ..Toolbox::default()
    };
    let server = TestServer::start_with(backend, move |s| s.with_server_tools(toolbox)).await;
    server
        .messages(code_request(container))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn code_runs_in_a_container_and_its_files_come_back_as_files() {
    let _one_at_a_time = SANDBOX.lock().await;
    let (server, _root) =
        code_server("python3 -c 'print(sum(range(10)))' && echo done > report.txt").await;
    let body: Value = server
        .messages(code_request(None))
        .await
        .json()
        .await
        .unwrap();
    let call = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "server_tool_use")
        .unwrap();
    assert_eq!(call["name"], "bash_code_execution");
    let result = bash_result(&body);
    assert_eq!(result["type"], "bash_code_execution_result", "{body}");
    assert_eq!(result["stdout"], "45\n");
    assert_eq!(result["return_code"], 0);
    // Execution time is billed from the ledger; it is not a field of the API's usage.
    assert!(
        body["usage"]["server_tool_use"]
            .get("code_execution_ms")
            .is_none(),
        "{body}"
    );
    let rows = ledger(&server);
    assert!(rows[0].tokens.code_execution_ms > 0, "{:?}", rows[0].tokens);
    let file_id = result["content"][0]["file_id"].as_str().unwrap();
    let meta: Value = server
        .get(&format!("/v1/files/{file_id}"))
        .header("anthropic-beta", "files-api-2025-04-14")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["filename"], "report.txt", "{meta}");
    assert_eq!(meta["downloadable"], true);
    let bytes = server
        .get(&format!("/v1/files/{file_id}/content"))
        .header("anthropic-beta", "files-api-2025-04-14")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(bytes, "done\n");
    // The container is named in the reply and kept: the next request reads the file.
    let container = body["container"]["id"].as_str().unwrap().to_owned();
    assert!(container.starts_with("container_"));
    assert!(body["container"]["expires_at"].is_string());
    // A container this server never made is refused by name.
    let (other, _other_root) = code_server("cat report.txt").await;
    let response = other.messages(code_request(Some(&container))).await;
    let message = assert_error(response, 400, "invalid_request_error").await;
    assert!(
        message.starts_with(&format!("container: `{container}` was not found")),
        "{message}"
    );
}

#[tokio::test]
async fn a_container_is_reused_by_id_within_its_workspace() {
    let _one_at_a_time = SANDBOX.lock().await;
    let root = tempfile::tempdir().unwrap();
    let writer = ScriptedBackend::new("scripted-1", &["Ran."]).calling_tool_once(
        "bash_code_execution",
        json!({"command": "echo kept > note.txt"}),
    );
    let body = run_in(root.path(), writer, None).await;
    let container = body["container"]["id"].as_str().unwrap().to_owned();
    let reader = ScriptedBackend::new("scripted-1", &["Ran."])
        .calling_tool_once("bash_code_execution", json!({"command": "cat note.txt"}));
    let body = run_in(root.path(), reader, Some(&container)).await;
    assert_eq!(bash_result(&body)["stdout"], "kept\n", "{body}");
    assert_eq!(body["container"]["id"], container.as_str());
}

#[tokio::test]
async fn abuse_fails_cleanly_and_the_server_stays_up() {
    let _one_at_a_time = SANDBOX.lock().await;
    for (command, check) in [
        (
            "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)\"",
            "Network is unreachable",
        ),
        ("echo x > /usr/missive-escape", "Read-only file system"),
        ("python3 -c 'b = bytearray(10 * 1024**3)'", "MemoryError"),
        ("sleep 3600", "execution_time_exceeded"),
        // The process cap stops the forks; the namespace dies with the command, whatever
        // it had started (checked below).
        (":(){ :|:& };:; sleep 1", "bash_code_execution_result"),
    ] {
        let (server, _root) = code_server(command).await;
        let started = std::time::Instant::now();
        let response = server.messages(code_request(None)).await;
        assert_eq!(response.status(), 200, "{command}");
        let body: Value = response.json().await.unwrap();
        let result = bash_result(&body);
        let text = result.to_string();
        assert!(text.contains(check), "{command}: {result}");
        match check {
            "execution_time_exceeded" => {
                assert_eq!(result["type"], "bash_code_execution_tool_result_error")
            }
            "bash_code_execution_result" => {}
            _ => assert_ne!(result["return_code"], 0, "{command}"),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{command}"
        );
        // Still serving.
        let health = server
            .client
            .get(format!("{}/health", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    assert!(!std::path::Path::new("/usr/missive-escape").exists());
    // Nothing the commands started is still running (a killed namespace's first process
    // may wait a moment for the host's init to reap it; it runs nothing).
    let states = std::process::Command::new("ps")
        .args(["-u", "65534", "-o", "stat=,args="])
        .output()
        .unwrap();
    let running: Vec<String> = String::from_utf8_lossy(&states.stdout)
        .lines()
        .filter(|line| !line.trim_start().starts_with('Z'))
        .map(str::to_owned)
        .collect();
    assert!(running.is_empty(), "{running:?}");
}

#[tokio::test]
async fn a_batch_request_runs_its_server_tools_too() {
    let site = site().await;
    let url = format!("{site}/page");
    let backend = ScriptedBackend::new("scripted-1", &["Done."])
        .calling_tool_once("web_fetch", json!({"url": url}));
    let server = serve(backend, &site, 5).await;
    let created: Value = server
        .post("/v1/messages/batches")
        .json(&json!({"requests": [{"custom_id": "fetch", "params": fetch_request(&url)}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let mut results_url = None;
    for _ in 0..400 {
        let batch: Value = server
            .get(&format!("/v1/messages/batches/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if batch["processing_status"] == "ended" {
            results_url = batch["results_url"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let text = server
        .client
        .get(results_url.expect("the batch ended"))
        .header("x-api-key", super::common::KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let message = &line["result"]["message"];
    assert_eq!(fetch_errors(message), ["ok"], "{line}");
    assert_eq!(message["usage"]["server_tool_use"]["web_fetch_requests"], 1);
    assert_eq!(message["usage"]["service_tier"], "batch");
}

#[tokio::test]
async fn the_text_editor_works_in_the_container_and_links_cannot_lead_out() {
    let _one_at_a_time = SANDBOX.lock().await;
    let root = tempfile::tempdir().unwrap();
    let edit = |input: Value| {
        ScriptedBackend::new("scripted-1", &["Done."])
            .calling_tool_once("text_editor_code_execution", input)
    };
    let body = run_in(
        root.path(),
        edit(json!({"command": "create", "path": "/workspace/notes.md", "file_text": "otters\n"})),
        None,
    )
    .await;
    let created = &result_of(&body, "text_editor_code_execution_tool_result")["content"];
    assert_eq!(created["type"], "text_editor_code_execution_create_result");
    assert_eq!(created["is_file_update"], false);
    let container = body["container"]["id"].as_str().unwrap().to_owned();
    // A link the code planted pointing out of the container is not followed.
    let linker = ScriptedBackend::new("scripted-1", &["Done."]).calling_tool_once(
        "bash_code_execution",
        json!({"command": "ln -s /etc escape && cat notes.md"}),
    );
    let body = run_in(root.path(), linker, Some(&container)).await;
    assert_eq!(bash_result(&body)["stdout"], "otters\n", "{body}");
    let viewer = edit(json!({"command": "view", "path": "escape/hostname"}));
    let body = run_in(root.path(), viewer, Some(&container)).await;
    let refused = &result_of(&body, "text_editor_code_execution_tool_result")["content"];
    assert_eq!(
        refused["type"],
        "text_editor_code_execution_tool_result_error"
    );
    assert_eq!(refused["error_code"], "invalid_tool_input");
}
