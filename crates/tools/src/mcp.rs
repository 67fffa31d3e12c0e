//! The MCP connector: the request names MCP servers (`mcp_servers`), this server connects
//! to each over Streamable HTTP with the official Rust SDK (`rmcp`), or over the older
//! HTTP+SSE transport (`crate::mcp_sse`) for servers that speak only that, lists its tools, and
//! gives the model the ones the request selects (`mcp_toolset` with `default_config` and
//! `configs`, or the older `tool_configuration`). Calls are run on the server that listed
//! the tool; the answer carries `mcp_tool_use` and `mcp_tool_result` blocks.
//!
//! A server's URL passes the same address rules as a fetch ([`crate::public_url`]): the
//! workspace's allowlist, and no private address unless the operator names it. The
//! connection is pinned to the address that was checked.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

use missive_protocol::content::CacheControl;
use missive_protocol::tools::Tool;
use missive_protocol::MessagesRequest;

use crate::public_url::{self, Rules};
use crate::spec::{self, Kind, ServerTool};
use crate::Toolbox;

/// One entry of `mcp_servers`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    pub name: String,
    pub url: String,
    pub token: Option<String>,
    /// The older shape's `tool_configuration`: `enabled` and `allowed_tools`.
    pub enabled: bool,
    pub allowed_tools: Option<Vec<String>>,
}

/// The request's `mcp_servers` (validated already: URL servers with unique names).
pub fn servers(value: Option<&Value>) -> Vec<ServerEntry> {
    let Some(list) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|server| {
            let text = |key: &str| server.get(key).and_then(Value::as_str).map(str::to_owned);
            let config = &server["tool_configuration"];
            ServerEntry {
                name: text("name").unwrap_or_default(),
                url: text("url").unwrap_or_default(),
                token: text("authorization_token"),
                enabled: config["enabled"].as_bool().unwrap_or(true),
                allowed_tools: config["allowed_tools"].as_array().map(|tools| {
                    tools
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                }),
            }
        })
        .collect()
}

/// A tool an MCP server offers, as the model is to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Value,
}

/// A connection to one MCP server, for the length of one request.
pub struct Session {
    pub name: String,
    client: RunningService<RoleClient, ()>,
    timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("name", &self.name).finish()
    }
}

impl Session {
    /// Connects and initialises, within `timeout`. The error is worded for the client.
    pub async fn connect(
        entry: &ServerEntry,
        allowlist: Option<&[String]>,
        private_hosts: &[String],
        timeout: Duration,
    ) -> Result<Self, String> {
        let rules = Rules {
            allowlist,
            private_hosts,
        };
        let (url, pinned) = public_url::resolve(&entry.url, rules)
            .await
            .map_err(|e| e.to_string())?;
        // No redirects and no proxy: each would reach an address nobody checked.
        let mut builder = reqwest_mcp::Client::builder()
            .redirect(reqwest_mcp::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout);
        if let (Some(address), Some(domain)) = (pinned, url.domain()) {
            builder = builder.resolve(domain, address);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let token = entry.token.as_deref();
        // A URL ending in `/sse` is the older transport's by convention; anything else is
        // tried over Streamable HTTP first, as the MCP's compatibility rules say.
        let sse_first = url.path().trim_end_matches('/').ends_with("/sse");
        let first = match sse_first {
            true => over_sse(&http, &url, token, timeout).await,
            false => over_streamable(&http, &url, token, timeout).await,
        };
        let client = match first {
            Ok(client) => client,
            Err(err) if err.contains("authorization token") => return Err(err),
            Err(err) => {
                let second = match sse_first {
                    true => over_streamable(&http, &url, token, timeout).await,
                    false => over_sse(&http, &url, token, timeout).await,
                };
                match second {
                    Ok(client) => client,
                    Err(again) if again.contains("authorization token") => return Err(again),
                    Err(_) => return Err(err),
                }
            }
        };
        Ok(Self {
            name: entry.name.clone(),
            client,
            timeout,
        })
    }

    /// Every tool the server lists.
    pub async fn list(&self) -> Result<Vec<Listed>, String> {
        let tools = tokio::time::timeout(self.timeout, self.client.list_all_tools())
            .await
            .map_err(|_| format!("listing tools took more than {} s", self.timeout.as_secs()))?
            .map_err(|e| format!("listing tools failed: {e}"))?;
        Ok(tools
            .into_iter()
            .map(|tool| Listed {
                name: tool.name.into_owned(),
                description: tool.description.map(|d| d.into_owned()),
                input_schema: Value::Object((*tool.input_schema).clone()),
            })
            .collect())
    }

    /// Calls `tool`; returns its text blocks and whether the tool reported an error. A
    /// transport failure or a timeout is an error result, not a failed request.
    pub async fn call(&self, tool: &str, input: &Value) -> (Vec<String>, bool) {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Value::Object(arguments) = input {
            params = params.with_arguments(arguments.clone());
        }
        match tokio::time::timeout(self.timeout, self.client.call_tool(params)).await {
            Err(_) => (
                vec![format!(
                    "The MCP tool did not answer within {} s.",
                    self.timeout.as_secs()
                )],
                true,
            ),
            Ok(Err(err)) => (vec![format!("The MCP tool call failed: {err}")], true),
            Ok(Ok(result)) => {
                let mut texts: Vec<String> = result
                    .content
                    .iter()
                    .map(|block| match block.as_text() {
                        Some(text) => text.text.clone(),
                        None => serde_json::to_string(block).unwrap_or_default(),
                    })
                    .collect();
                if texts.is_empty() {
                    if let Some(structured) = &result.structured_content {
                        texts.push(structured.to_string());
                    }
                }
                (texts, result.is_error.unwrap_or(false))
            }
        }
    }
}

fn connect_error(message: &str) -> String {
    // rmcp reports a 401 as "Auth required".
    if message.contains("Auth required") || message.contains("401") || message.contains("403") {
        "the server refused the authorization token (401); check `authorization_token`".to_owned()
    } else {
        format!("could not connect: {message}")
    }
}

type Client = RunningService<RoleClient, ()>;

fn too_slow(timeout: Duration) -> String {
    format!("the server did not answer within {} s", timeout.as_secs())
}

async fn over_streamable(
    http: &reqwest_mcp::Client,
    url: &url::Url,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Client, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    match tokio::time::timeout(timeout, ().serve(transport)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(connect_error(&err.to_string())),
        Err(_) => Err(too_slow(timeout)),
    }
}

async fn over_sse(
    http: &reqwest_mcp::Client,
    url: &url::Url,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Client, String> {
    let opened = tokio::time::timeout(timeout, async {
        let transport = crate::mcp_sse::SseTransport::open(
            http.clone(),
            url.clone(),
            token.map(str::to_owned),
            timeout,
        )
        .await
        .map_err(|err| connect_error(&err.to_string()))?;
        ().serve(transport)
            .await
            .map_err(|err| connect_error(&err.to_string()))
    })
    .await;
    opened.unwrap_or_else(|_| Err(too_slow(timeout)))
}

/// What a request's `mcp_toolset` makes of one server's tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub default_enabled: bool,
    pub default_defer: bool,
    /// Per tool: `enabled`, `defer_loading`.
    pub configs: HashMap<String, (Option<bool>, Option<bool>)>,
    /// Tool definitions the request lists itself (`tools`), used instead of listing.
    pub listed: Option<Vec<Listed>>,
}

impl Selection {
    /// From an `mcp_toolset`'s settings.
    pub fn from_toolset(settings: &serde_json::Map<String, Value>) -> Self {
        let flag = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool);
        let default = settings.get("default_config").unwrap_or(&Value::Null);
        let configs = settings
            .get("configs")
            .and_then(Value::as_object)
            .map(|configs| {
                configs
                    .iter()
                    .map(|(name, c)| (name.clone(), (flag(c, "enabled"), flag(c, "defer_loading"))))
                    .collect()
            })
            .unwrap_or_default();
        let listed = settings
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .map(|t| Listed {
                        name: t["name"].as_str().unwrap_or_default().to_owned(),
                        description: t["description"].as_str().map(str::to_owned),
                        input_schema: t
                            .get("input_schema")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    })
                    .collect()
            });
        Self {
            default_enabled: flag(default, "enabled").unwrap_or(true),
            default_defer: flag(default, "defer_loading").unwrap_or(false),
            configs,
            listed,
        }
    }

    /// The older shape: `tool_configuration` on the server entry.
    pub fn from_entry(entry: &ServerEntry) -> Self {
        let mut selection = Self {
            default_enabled: entry.enabled && entry.allowed_tools.is_none(),
            ..Self::default()
        };
        for name in entry.allowed_tools.iter().flatten() {
            selection
                .configs
                .insert(name.clone(), (Some(entry.enabled), None));
        }
        selection
    }

    /// Whether `tool` is given to the model, and whether it is deferred.
    pub fn choose(&self, tool: &str) -> Option<bool> {
        let (enabled, defer) = self.configs.get(tool).copied().unwrap_or((None, None));
        enabled
            .unwrap_or(self.default_enabled)
            .then(|| defer.unwrap_or(self.default_defer))
    }
}

/// A tool result's text blocks, as `mcp_tool_result.content`.
pub fn result_content(texts: &[String]) -> Value {
    Value::Array(
        texts
            .iter()
            .map(|t| json!({"type": "text", "text": t, "citations": null}))
            .collect(),
    )
}

/// Connects to the MCP servers the request names and puts the tools it selects in place
/// of its `mcp_toolset` entries. With no toolset at all, the older shape applies: every
/// server's tools, as its `tool_configuration` allows.
pub(crate) async fn connect_all(
    request: &mut MessagesRequest,
    toolbox: &Toolbox,
    allowlist: Option<&[String]>,
    found: &mut Vec<ServerTool>,
) -> Result<Vec<Session>, String> {
    let entries = servers(request.mcp_servers.as_ref());
    request.mcp_servers = None;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let tools = request.tools.get_or_insert_with(Vec::new);
    let toolsets: Vec<Tool> = tools
        .iter()
        .filter(|t| t.kind.as_deref() == Some("mcp_toolset"))
        .cloned()
        .collect();
    tools.retain(|t| t.kind.as_deref() != Some("mcp_toolset"));
    let selections: Vec<(usize, Selection, Option<CacheControl>)> = if toolsets.is_empty() {
        (0..entries.len())
            .map(|i| (i, Selection::from_entry(&entries[i]), None))
            .collect()
    } else {
        toolsets
            .iter()
            .filter_map(|set| {
                let name = set.settings.get("mcp_server_name")?.as_str()?;
                let i = entries.iter().position(|e| e.name == name)?;
                Some((
                    i,
                    Selection::from_toolset(&set.settings),
                    set.cache_control.clone(),
                ))
            })
            .collect()
    };
    let mut sessions = Vec::new();
    for (i, selection, cache_control) in selections {
        let entry = &entries[i];
        let session = Session::connect(
            entry,
            allowlist,
            &toolbox.fetcher.private_hosts,
            toolbox.call_timeout,
        )
        .await
        .map_err(|e| format!("mcp_servers.{i}: {e}"))?;
        let listed = match &selection.listed {
            Some(listed) => listed.clone(),
            None => session
                .list()
                .await
                .map_err(|e| format!("mcp_servers.{i}: {e}"))?,
        };
        let start = tools.len();
        for tool in listed {
            let Some(defer) = selection.choose(&tool.name) else {
                continue;
            };
            if tools.iter().any(|t| t.name == tool.name) {
                return Err(format!(
                    "mcp_servers.{i}: the server's tool `{}` has the name of another tool of the request",
                    tool.name
                ));
            }
            found.push(ServerTool {
                name: tool.name.clone(),
                kind: Kind::Mcp {
                    server: entry.name.clone(),
                },
                max_uses: None,
                domains: spec::Domains::default(),
            });
            tools.push(Tool {
                name: tool.name,
                kind: None,
                description: tool.description,
                input_schema: Some(tool.input_schema),
                strict: None,
                cache_control: None,
                defer_loading: defer.then_some(true),
                input_examples: None,
                allowed_callers: None,
                eager_input_streaming: None,
                settings: serde_json::Map::new(),
            });
        }
        // The toolset's breakpoint goes on the last of its tools.
        if let (Some(last), Some(cache_control)) = (tools[start..].last_mut(), cache_control) {
            last.cache_control = Some(cache_control);
        }
        sessions.push(session);
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolsets_and_the_older_configuration_select_tools() {
        let settings = json!({
            "mcp_server_name": "crm",
            "default_config": {"enabled": false},
            "configs": {"lookup": {"enabled": true, "defer_loading": true}}
        });
        let selection = Selection::from_toolset(settings.as_object().unwrap());
        assert_eq!(selection.choose("lookup"), Some(true));
        assert_eq!(selection.choose("delete"), None);
        let entry = ServerEntry {
            name: "crm".into(),
            url: "https://crm.example/mcp".into(),
            token: None,
            enabled: true,
            allowed_tools: Some(vec!["echo".into()]),
        };
        let selection = Selection::from_entry(&entry);
        assert_eq!(selection.choose("echo"), Some(false));
        assert_eq!(selection.choose("add"), None);
    }
}
