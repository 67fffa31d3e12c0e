use std::sync::Arc;

use missive_backend::scripted::ScriptedBackend;
use missive_server::{app, AppState, Auth, FilesConfig, ModelRouter};
use missive_store::{SqliteStore, Store};

pub const KEY: &str = "sk-ant-api03-test-key";
pub const ADMIN_KEY: &str = "sk-ant-admin01-test-key";

/// A live server on an ephemeral port, backed by scripted models and a temp SQLite store.
pub struct TestServer {
    pub url: String,
    pub client: reqwest::Client,
    pub store: Arc<SqliteStore>,
    pub files_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: ScriptedBackend) -> Self {
        Self::start_with(backend, |state| state).await
    }

    /// As `start`, with the state adjusted (rate limits, keys) before serving.
    pub async fn start_with(
        backend: ScriptedBackend,
        adjust: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        Self::start_models(vec![backend], adjust).await
    }

    /// As `start_with`, serving several models; `claude-*` names the first.
    pub async fn start_models(
        backends: Vec<ScriptedBackend>,
        adjust: impl FnOnce(AppState) -> AppState,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("missive.db")).unwrap());
        let id = missive_backend::Backend::descriptor(&backends[0])
            .id
            .clone();
        let router = backends
            .into_iter()
            .fold(ModelRouter::new(), |router, backend| {
                router.with_model(Arc::new(backend))
            })
            .with_alias("claude-*", &id);
        let auth = Auth::new(
            &[KEY.to_owned()],
            Some(Arc::clone(&store) as Arc<dyn Store>),
        )
        .with_admin_keys(&[ADMIN_KEY.to_owned()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(router, auth)
            .with_store(
                Arc::clone(&store) as Arc<dyn Store>,
                Default::default(),
                Default::default(),
            )
            .unwrap()
            .with_files(FilesConfig {
                downloadable_uploads: true,
                ..FilesConfig::new(dir.path().join("files"))
            });
        // The worker keeps the state it starts with, so it starts after the adjustments.
        let app = app(adjust(state).with_batch_worker(4));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store,
            files_dir: dir.path().join("files"),
            _dir: dir,
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.url))
            .header("x-api-key", KEY)
    }

    pub async fn messages(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/messages").json(&body).send().await.unwrap()
    }
}

/// The `type` of each of a message's content blocks, in order.
pub fn block_types(message: &serde_json::Value) -> Vec<&str> {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect()
}

pub fn hello() -> ScriptedBackend {
    ScriptedBackend::new("scripted-1", &["Hello", " there", ", friend", "!"])
}

pub fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

/// Parses an SSE body into (event name, data JSON) pairs.
pub fn parse_sse(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// Asserts the error envelope, its status and that `request_id` equals the header.
pub async fn assert_error(response: reqwest::Response, status: u16, error_type: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    let header = response
        .headers()
        .get("request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.starts_with("req_"), "{header}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert_eq!(body["request_id"], header.as_str(), "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}
