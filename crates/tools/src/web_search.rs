//! `web_search`, answered by a search service the operator runs or pays for: SearXNG's
//! JSON API (self-hosted) or the Brave Search API. The results come back as
//! `web_search_result` blocks; the model reads their titles, URLs and snippets.
//!
//! `encrypted_content` is the snippet, base64-encoded and not encrypted: it carries the
//! same text back to the model when the client sends the conversation again.

use base64::Engine;
use missive_protocol::content::ContentBlock;
use missive_protocol::usage::ServerToolUsage;
use serde_json::{json, Value};
use url::Url;

use crate::spec::ServerTool;
use crate::{Outcome, Toolbox};

/// Longest query the tool takes.
const MAX_QUERY_CHARS: usize = 400;
/// Results one search returns.
const RESULTS: usize = 10;

/// The search service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchBackend {
    /// A SearXNG instance with the JSON format enabled: `{url}/search?q=…&format=json`.
    Searxng { url: Url },
    /// The Brave Search API; `url` replaces the public endpoint (tests, proxies).
    Brave { api_key: String, url: Url },
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub url: String,
    pub title: String,
    pub snippet: String,
    pub page_age: Option<String>,
}

/// Runs one `web_search` call.
pub async fn run(
    toolbox: &Toolbox,
    tool: &ServerTool,
    input: &Value,
    tool_use_id: &str,
) -> Outcome {
    let error = |code: &str| Outcome {
        result: ContentBlock::WebSearchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({"type": "web_search_tool_result_error", "error_code": code}),
        },
        for_model: format!("The search failed: {code}"),
        is_error: true,
        usage: ServerToolUsage::default(),
    };
    let Some(query) = input
        .get("query")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|q| !q.is_empty())
    else {
        return error("invalid_tool_input");
    };
    if query.chars().count() > MAX_QUERY_CHARS {
        return error("query_too_long");
    }
    let Some(backend) = &toolbox.search else {
        return error("unavailable");
    };
    let location = match &tool.kind {
        crate::spec::Kind::WebSearch { user_location } => user_location.as_ref(),
        _ => None,
    };
    let hits = match search(backend, query, location, toolbox.call_timeout).await {
        Ok(hits) => hits,
        Err(err) => {
            tracing::warn!(error = %err, "web search failed");
            return error("unavailable");
        }
    };
    let hits: Vec<Hit> = hits
        .into_iter()
        .filter(|hit| Url::parse(&hit.url).is_ok_and(|u| tool.domains.permits(&u)))
        .take(RESULTS)
        .collect();
    let content: Vec<Value> = hits
        .iter()
        .map(|hit| {
            json!({
                "type": "web_search_result",
                "url": hit.url,
                "title": hit.title,
                "encrypted_content": base64::engine::general_purpose::STANDARD.encode(&hit.snippet),
                "page_age": hit.page_age,
            })
        })
        .collect();
    Outcome {
        result: ContentBlock::WebSearchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: Value::Array(content),
        },
        for_model: for_model(query, &hits),
        is_error: false,
        usage: ServerToolUsage {
            web_search_requests: 1,
            ..ServerToolUsage::default()
        },
    }
}

/// The results as the model reads them.
pub fn for_model(query: &str, hits: &[Hit]) -> String {
    if hits.is_empty() {
        return format!("No results for \"{query}\".");
    }
    let mut out = format!("Search results for \"{query}\":");
    for (i, hit) in hits.iter().enumerate() {
        out.push_str(&format!("\n\n[{}] {}\n{}", i + 1, hit.title, hit.url));
        if !hit.snippet.is_empty() {
            out.push_str(&format!("\n{}", hit.snippet));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(String);

async fn search(
    backend: &SearchBackend,
    query: &str,
    location: Option<&Value>,
    timeout: std::time::Duration,
) -> Result<Vec<Hit>, SearchError> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // A followed redirect would carry the Brave key (a header reqwest keeps across
        // hosts) wherever it pointed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SearchError(e.to_string()))?;
    let country = location
        .and_then(|l| l.get("country"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (request, kind) = match backend {
        SearchBackend::Searxng { url } => {
            let mut url = url.join("search").map_err(|e| SearchError(e.to_string()))?;
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("format", "json");
            (client.get(url), "searxng")
        }
        SearchBackend::Brave { api_key, url } => {
            let mut url = url.clone();
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("count", &RESULTS.to_string());
            if let Some(country) = &country {
                url.query_pairs_mut().append_pair("country", country);
            }
            (
                client
                    .get(url)
                    .header("Accept", "application/json")
                    .header("X-Subscription-Token", api_key),
                "brave",
            )
        }
    };
    let response = request
        .send()
        .await
        .map_err(|e| SearchError(format!("{kind}: {e}")))?;
    if !response.status().is_success() {
        return Err(SearchError(format!(
            "{kind} answered {}",
            response.status()
        )));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| SearchError(format!("{kind}: {e}")))?;
    Ok(match backend {
        SearchBackend::Searxng { .. } => hits(&body["results"], "content", "publishedDate"),
        SearchBackend::Brave { .. } => hits(&body["web"]["results"], "description", "age"),
    })
}

/// Results from a JSON list whose items carry `url`, `title`, a snippet and an age.
fn hits(results: &Value, snippet: &str, age: &str) -> Vec<Hit> {
    results
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(Hit {
                        url: item.get("url")?.as_str()?.to_owned(),
                        title: item
                            .get("title")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        snippet: item
                            .get(snippet)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        page_age: item.get(age).and_then(Value::as_str).map(str::to_owned),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Answers every request with a 307 to `target`.
    async fn redirecting_to(target: String) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        Url::parse(&format!("http://{addr}/res/v1/web/search")).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_from_the_search_api_is_an_error_and_the_key_stays_here() {
        let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/steal", elsewhere.local_addr().unwrap());
        let reached = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reached);
        tokio::spawn(async move {
            while elsewhere.accept().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
        let backend = SearchBackend::Brave {
            api_key: "brave-secret".into(),
            url: redirecting_to(target).await,
        };
        let err = search(&backend, "otters", None, std::time::Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("307"), "{err}");
        assert!(!reached.load(Ordering::SeqCst), "the redirect was followed");
    }

    #[test]
    fn searxng_and_brave_results_are_read() {
        let searx = json!({"results": [
            {"url": "https://a.example/x", "title": "A", "content": "alpha", "publishedDate": "2026-01-02"},
            {"title": "no url"}
        ]});
        let read = hits(&searx["results"], "content", "publishedDate");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].snippet, "alpha");
        assert_eq!(read[0].page_age.as_deref(), Some("2026-01-02"));
        let brave = json!({"web": {"results": [{"url": "https://b.example", "title": "B", "description": "beta", "age": "2 days ago"}]}});
        let read = hits(&brave["web"]["results"], "description", "age");
        assert_eq!(read[0].title, "B");
        assert_eq!(read[0].page_age.as_deref(), Some("2 days ago"));
    }
}
