//! The server tools a request defines (`web_fetch_*`, `web_search_*`, `tool_search_tool_*`,
//! `advisor_*`), read from its tool list with their settings checked, and the client-tool
//! definition the model is given in their place.

use missive_protocol::tools::Tool;
use serde_json::{json, Value};
use url::Url;

/// A server tool of the request, by the name the model calls it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTool {
    pub name: String,
    pub kind: Kind,
    /// Calls allowed in one request; `None`: no limit beyond the round cap.
    pub max_uses: Option<u32>,
    pub domains: Domains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    WebFetch {
        /// About this many tokens of a page's text reach the model.
        max_content_tokens: Option<u32>,
        /// `citations.enabled`: the fetched document is marked citable.
        citations: bool,
    },
    WebSearch {
        /// `user_location`, as sent: backends that localise results read it.
        user_location: Option<Value>,
    },
    /// A tool of the MCP server of this name.
    Mcp { server: String },
    /// `bash_code_execution`, in the request's container.
    Bash,
    /// `text_editor_code_execution`, in the request's container.
    TextEditor,
    /// `tool_search_tool_regex` or `tool_search_tool_bm25`, over the request's deferred
    /// tools (filled in once MCP servers have listed theirs).
    ToolSearch {
        mode: crate::tool_search::Mode,
        catalog: std::sync::Arc<crate::tool_search::Catalog>,
    },
    /// `advisor_20260301`: a second model, named by `model`, advises the first.
    Advisor {
        model: String,
        /// The advice's token limit; `None`: [`crate::advisor::DEFAULT_MAX_TOKENS`].
        max_tokens: Option<u32>,
        /// A cache breakpoint at the end of the conversation the advisor reads.
        caching: Option<missive_protocol::content::CacheControl>,
    },
}

/// `allowed_domains` / `blocked_domains`. A domain covers its subdomains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Domains {
    pub allowed: Option<Vec<String>>,
    pub blocked: Vec<String>,
}

impl Domains {
    /// Whether `url`'s host passes the filters.
    pub fn permits(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let covers = |domain: &String| {
            let domain = domain
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_ascii_lowercase();
            host == domain || host.ends_with(&format!(".{domain}"))
        };
        if self.blocked.iter().any(covers) {
            return false;
        }
        self.allowed
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(covers))
    }
}

const FETCH_TYPES: [&str; 4] = [
    "web_fetch_20250910",
    "web_fetch_20260209",
    "web_fetch_20260309",
    "web_fetch_20260318",
];
const SEARCH_TYPES: [&str; 3] = [
    "web_search_20250305",
    "web_search_20260209",
    "web_search_20260318",
];

/// The server tool `tool` defines, `None` for any other tool, or a refusal naming the
/// setting (`tools.{index}.…`) this server cannot honour.
pub fn parse(index: usize, tool: &Tool) -> Result<Option<ServerTool>, String> {
    let Some(kind) = tool.kind.as_deref() else {
        return Ok(None);
    };
    if kind == crate::advisor::TYPE {
        return crate::advisor::parse(index, tool).map(Some);
    }
    // Each tool search type has an unversioned twin, which is also its tool's name.
    let unversioned = kind.strip_suffix("_20251119").unwrap_or(kind);
    let search_mode = match unversioned {
        "tool_search_tool_regex" => Some(crate::tool_search::Mode::Regex),
        "tool_search_tool_bm25" => Some(crate::tool_search::Mode::Bm25),
        _ => None,
    };
    if let Some(mode) = search_mode {
        return tool_search(index, tool, unversioned, mode).map(Some);
    }
    let fetch = FETCH_TYPES.contains(&kind);
    if !fetch && !SEARCH_TYPES.contains(&kind) {
        return Ok(None);
    }
    let at = |field: &str| format!("tools.{index}.{field}");
    let settings = &tool.settings;
    for (key, value) in settings {
        let known = match key.as_str() {
            "max_uses" | "allowed_domains" | "blocked_domains" => true,
            "max_content_tokens" | "citations" | "use_cache" => fetch,
            "user_location" => !fetch,
            "response_inclusion" => {
                if value.is_null() || value.as_str() == Some("full") {
                    true
                } else {
                    return Err(format!(
                        "{}: only `full` is served; this server always returns tool results",
                        at(key)
                    ));
                }
            }
            "url_sources" => {
                if value.is_null() {
                    true
                } else {
                    return Err(format!(
                        "{}: URL sources are not supported on this server; a fetched URL must appear in the conversation",
                        at(key)
                    ));
                }
            }
            _ => false,
        };
        if !known {
            return Err(format!("{}: Extra inputs are not permitted", at(key)));
        }
    }
    let strings = |key: &str| -> Result<Option<Vec<String>>, String> {
        match settings.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{}: a list of domain names", at(key)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("{}: a list of domain names", at(key))),
        }
    };
    let allowed = strings("allowed_domains")?;
    let blocked = strings("blocked_domains")?.unwrap_or_default();
    if allowed.is_some() && !blocked.is_empty() {
        return Err(format!(
            "{}: cannot be used together with `blocked_domains`",
            at("allowed_domains")
        ));
    }
    let count = |key: &str| count(settings, index, key);
    let max_uses = count("max_uses")?;
    let kind = if fetch {
        Kind::WebFetch {
            max_content_tokens: count("max_content_tokens")?,
            citations: settings
                .get("citations")
                .and_then(|c| c.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    } else {
        Kind::WebSearch {
            user_location: settings
                .get("user_location")
                .filter(|v| !v.is_null())
                .cloned(),
        }
    };
    Ok(Some(ServerTool {
        name: tool.name.clone(),
        kind,
        max_uses,
        domains: Domains { allowed, blocked },
    }))
}

/// A setting that counts something (`max_uses`, `max_tokens`): absent, or at least 1.
pub(crate) fn count(
    settings: &serde_json::Map<String, Value>,
    index: usize,
    key: &str,
) -> Result<Option<u32>, String> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                format!("tools.{index}.{key}: Input should be greater than or equal to 1")
            }),
    }
}

/// A tool search tool: named as its type requires, with no settings, and never deferred
/// itself (nothing could load it).
fn tool_search(
    index: usize,
    tool: &Tool,
    name: &str,
    mode: crate::tool_search::Mode,
) -> Result<ServerTool, String> {
    if tool.name != name {
        return Err(format!("tools.{index}.name: Input should be '{name}'"));
    }
    if let Some(key) = tool.settings.keys().next() {
        return Err(format!(
            "tools.{index}.{key}: Extra inputs are not permitted"
        ));
    }
    if tool.defer_loading == Some(true) {
        return Err(format!(
            "tools.{index}.defer_loading: the tool search tool cannot itself be deferred"
        ));
    }
    Ok(ServerTool {
        name: tool.name.clone(),
        kind: Kind::ToolSearch {
            mode,
            catalog: Default::default(),
        },
        max_uses: None,
        domains: Domains::default(),
    })
}

/// The definition a model that has never seen Anthropic's server tools is given: a client
/// tool of the same name with an input schema. Cache breakpoints and deferred loading carry
/// over.
pub fn as_client_tool(tool: &Tool, kind: &Kind) -> Tool {
    let (description, schema) = match kind {
        Kind::WebFetch { .. } => (
            "Fetch a web page or PDF and read its text. Only URLs that appear in the conversation (from the user or from earlier search and fetch results) can be fetched.",
            json!({
                "type": "object",
                "properties": {"url": {"type": "string", "description": "The URL to fetch."}},
                "required": ["url"],
                "additionalProperties": false
            }),
        ),
        Kind::ToolSearch { mode, .. } => crate::tool_search::definition(*mode),
        Kind::Advisor { .. } => crate::advisor::definition(),
        _ => (
            "Search the web. Returns titles, URLs and snippets of the best matching pages.",
            json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query."}},
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
    };
    Tool {
        name: tool.name.clone(),
        kind: None,
        description: Some(description.to_owned()),
        input_schema: Some(schema),
        strict: Some(true),
        cache_control: tool.cache_control.clone(),
        defer_loading: tool.defer_loading,
        input_examples: None,
        allowed_callers: None,
        eager_input_streaming: None,
        settings: serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(value: Value) -> Tool {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn settings_are_read_and_unknown_ones_named() {
        let fetch = parse(
            0,
            &tool(
                json!({"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2,
                "allowed_domains": ["example.com"], "citations": {"enabled": true}}),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(fetch.max_uses, Some(2));
        assert!(matches!(
            fetch.kind,
            Kind::WebFetch {
                citations: true,
                ..
            }
        ));
        let err = parse(
            3,
            &tool(json!({"type": "web_fetch_20250910", "name": "web_fetch", "max_usse": 2})),
        )
        .unwrap_err();
        assert_eq!(err, "tools.3.max_usse: Extra inputs are not permitted");
        let both = parse(
            1,
            &tool(json!({"type": "web_search_20250305", "name": "web_search",
                "allowed_domains": ["a.com"], "blocked_domains": ["b.com"]})),
        )
        .unwrap_err();
        assert!(both.starts_with("tools.1.allowed_domains: cannot be used together"));
        let custom = tool(json!({"name": "f", "input_schema": {"type": "object"}}));
        assert_eq!(parse(0, &custom).unwrap(), None);
    }

    #[test]
    fn domain_filters_cover_subdomains_only() {
        let domains = Domains {
            allowed: Some(vec!["example.com".into()]),
            blocked: vec![],
        };
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(domains.permits(&url("https://docs.example.com/a")));
        assert!(domains.permits(&url("https://example.com./a")));
        assert!(!domains.permits(&url("https://notexample.com/")));
        let blocked = Domains {
            allowed: None,
            blocked: vec!["evil.com".into()],
        };
        assert!(!blocked.permits(&url("http://www.evil.com/")));
        assert!(blocked.permits(&url("http://good.com/")));
    }
}
