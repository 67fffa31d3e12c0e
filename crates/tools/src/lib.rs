//! Tools the server runs for the model, as the Claude API runs them: `web_fetch` and
//! `web_search`. A request's server tools are read and checked ([`prepare`]), the model
//! is given client-tool definitions in their place, and [`rounds::ToolRunner`] runs the
//! model → tool → model loop inside one call.
//!
//! Outbound requests go through [`fetch`], which refuses private, loopback, link-local,
//! CGNAT and metadata addresses however they are spelled or resolved.

pub mod code_execution;
pub mod fetch;
pub mod history;
pub mod mcp;
pub mod pdf;
pub mod public_url;
pub mod rounds;
pub mod sandbox;
pub mod spec;
pub mod web_fetch;
pub mod web_search;

use std::sync::Arc;
use std::time::Duration;

use missive_protocol::content::CacheControl;
use missive_protocol::content::ContentBlock;
use missive_protocol::tools::{Tool, ToolChoice};
use missive_protocol::usage::ServerToolUsage;
use missive_protocol::MessagesRequest;
use serde_json::json;

use crate::fetch::Fetcher;
use crate::spec::{Kind, ServerTool};
use crate::web_search::SearchBackend;

/// What the server needs to run tools, from its configuration.
#[derive(Debug, Clone)]
pub struct Toolbox {
    pub fetcher: Fetcher,
    /// `None`: `web_search` is refused with a 400 that says so.
    pub search: Option<SearchBackend>,
    /// Rounds of server tools in one call before it pauses (`pause_turn`).
    pub max_rounds: u32,
    /// How long one call may take.
    pub call_timeout: Duration,
    /// `None`: code execution is refused with a 400 that says so.
    pub containers: Option<code_execution::Containers>,
}

/// The Files API, as code execution reaches it: for the files a command writes, and for
/// `container_upload` blocks. One workspace's files only.
#[async_trait::async_trait]
pub trait Files: Send + Sync {
    /// Saves bytes the container wrote at `path` as a downloadable file; its id.
    async fn save(&self, path: &str, bytes: Vec<u8>) -> Result<String, String>;
    /// A file's name and bytes.
    async fn load(&self, file_id: &str) -> Result<(String, Vec<u8>), String>;
}

impl Default for Toolbox {
    fn default() -> Self {
        Self {
            fetcher: Fetcher {
                private_hosts: Vec::new(),
                timeout: Duration::from_secs(20),
                max_bytes: 10 * 1024 * 1024,
            },
            search: None,
            max_rounds: 10,
            call_timeout: Duration::from_secs(30),
            containers: None,
        }
    }
}

/// One call's result: its block for the client, its text for the model, and what it
/// counts for.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: ContentBlock,
    pub for_model: String,
    pub is_error: bool,
    pub usage: ServerToolUsage,
}

impl Outcome {
    /// A call that failed before it ran, in its tool's error block.
    pub fn error_for(tool: &ServerTool, tool_use_id: &str, code: &str) -> Self {
        let tool_use_id = tool_use_id.to_owned();
        let result = match tool.kind {
            Kind::WebFetch { .. } => ContentBlock::WebFetchToolResult {
                tool_use_id,
                content: json!({"type": "web_fetch_tool_result_error", "error_code": code}),
            },
            Kind::WebSearch { .. } => ContentBlock::WebSearchToolResult {
                tool_use_id,
                content: json!({"type": "web_search_tool_result_error", "error_code": code}),
            },
            Kind::Mcp { .. } => ContentBlock::McpToolResult {
                tool_use_id,
                is_error: true,
                content: mcp::result_content(&[format!("The tool call failed: {code}")]),
            },
            Kind::Bash => return code_execution::bash_error(&tool_use_id, code),
            Kind::TextEditor => {
                return code_execution::editor_error(&tool_use_id, code, "the call failed")
            }
        };
        Self {
            result,
            for_model: format!("The tool call failed: {code}"),
            is_error: true,
            usage: ServerToolUsage::default(),
        }
    }
}

/// The server tools of one request, ready to run.
#[derive(Debug, Default)]
pub struct Prepared {
    pub tools: Vec<ServerTool>,
    /// Connections to the request's MCP servers, open until the reply ends.
    pub sessions: Vec<mcp::Session>,
    /// The code execution container, when the request runs code.
    pub container: Option<code_execution::Container>,
}

/// Whose request is prepared: the workspace (containers are per workspace) and its files.
#[derive(Clone, Copy, Default)]
pub struct Tenant<'a> {
    pub workspace: &'a str,
    /// The workspace's URL allowlist.
    pub allowlist: Option<&'a [String]>,
    pub files: Option<&'a Arc<dyn Files>>,
}

/// Reads the request's server tools, gives the model client-tool definitions in their
/// place, connects to its MCP servers and lists their tools, and rewrites server-tool
/// blocks of the conversation as tool calls and results. Returns what is to run, or a
/// refusal naming the field.
pub async fn prepare(
    request: &mut MessagesRequest,
    toolbox: &Toolbox,
    tenant: Tenant<'_>,
) -> Result<Prepared, String> {
    let allowlist = tenant.allowlist;
    let mut found = Vec::new();
    for (i, tool) in request.tools.iter_mut().flatten().enumerate() {
        let Some(server) = spec::parse(i, tool)? else {
            continue;
        };
        if matches!(server.kind, Kind::WebSearch { .. }) && toolbox.search.is_none() {
            return Err(format!(
                "tools.{i}.type: `{}` needs a search service, and none is configured on this server (`[server_tools.search]`, docs/configuration.md)",
                tool.kind.as_deref().unwrap_or("web_search")
            ));
        }
        *tool = spec::as_client_tool(tool, matches!(server.kind, Kind::WebFetch { .. }));
        found.push(server);
    }
    let container = code_tools(request, toolbox, tenant, &mut found).await?;
    let sessions = connect_mcp(request, toolbox, allowlist, &mut found).await?;
    if let Some(ToolChoice::Tool { name, .. }) = &request.tool_choice {
        if !request.tools.iter().flatten().any(|t| &t.name == name) {
            return Err(format!(
                "tool_choice.name: tool `{name}` is not among the request's tools"
            ));
        }
    }
    if history::has_server_blocks(&request.messages) {
        request.messages = history::lower(std::mem::take(&mut request.messages));
    }
    Ok(Prepared {
        tools: found,
        sessions,
        container,
    })
}

const CODE_EXECUTION: &str = "code_execution_20250825";

/// The request's `code_execution` tool, as the two tools the model calls, and its
/// container (named by `container`, or new), with `container_upload` files copied in.
async fn code_tools(
    request: &mut MessagesRequest,
    toolbox: &Toolbox,
    tenant: Tenant<'_>,
    found: &mut Vec<ServerTool>,
) -> Result<Option<code_execution::Container>, String> {
    let tools = request.tools.get_or_insert_with(Vec::new);
    let at = tools
        .iter()
        .position(|t| t.kind.as_deref() == Some(CODE_EXECUTION));
    let requested = match &request.container {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        Some(serde_json::Value::Object(params)) => {
            if params
                .get("skills")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|s| !s.is_empty())
            {
                return Err("container.skills: skills are not supported on this server".into());
            }
            params
                .get("id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        }
        Some(_) => return Err("container: a container id or `{\"id\": …}`".into()),
    };
    request.container = None;
    let uploads = has_uploads(&request.messages);
    if at.is_none() && requested.is_none() && !uploads {
        return Ok(None);
    }
    let Some(containers) = &toolbox.containers else {
        let field = match at {
            Some(i) => format!("tools.{i}.type: `{CODE_EXECUTION}`"),
            None => "container".to_owned(),
        };
        return Err(format!(
            "{field} needs code execution, which is not enabled on this server (`[server_tools.code_execution]`, docs/server-tools.md)"
        ));
    };
    let container = containers.open(requested.as_deref(), tenant.workspace)?;
    if let Some(i) = at {
        let tool = tools.remove(i);
        // Forcing the code execution tool forces a command.
        if let Some(ToolChoice::Tool { name, .. }) = &mut request.tool_choice {
            if *name == tool.name {
                "bash_code_execution".clone_into(name);
            }
        }
        for (offset, (name, description, schema)) in
            code_execution::client_tools().into_iter().enumerate()
        {
            tools.insert(
                i + offset,
                Tool {
                    name: name.to_owned(),
                    kind: None,
                    description: Some(description.to_owned()),
                    input_schema: Some(schema),
                    strict: Some(true),
                    cache_control: if offset == 1 {
                        tool.cache_control.clone()
                    } else {
                        None
                    },
                    defer_loading: tool.defer_loading,
                    input_examples: None,
                    allowed_callers: None,
                    eager_input_streaming: None,
                    settings: serde_json::Map::new(),
                },
            );
            found.push(ServerTool {
                name: name.to_owned(),
                kind: if offset == 0 {
                    Kind::Bash
                } else {
                    Kind::TextEditor
                },
                max_uses: None,
                domains: spec::Domains::default(),
            });
        }
    }
    if uploads {
        upload(&mut request.messages, &container, tenant.files).await?;
    }
    Ok(Some(container))
}

fn has_uploads(messages: &[missive_protocol::messages::MessageParam]) -> bool {
    messages.iter().any(|m| match &m.content {
        missive_protocol::messages::MessageContent::Blocks(blocks) => blocks.iter().any(|b| {
            matches!(
                b,
                missive_protocol::content::ContentBlockParam::ContainerUpload { .. }
            )
        }),
        missive_protocol::messages::MessageContent::Text(_) => false,
    })
}

/// Copies each `container_upload` file into the container and tells the model where it is.
async fn upload(
    messages: &mut [missive_protocol::messages::MessageParam],
    container: &code_execution::Container,
    files: Option<&Arc<dyn Files>>,
) -> Result<(), String> {
    use missive_protocol::content::ContentBlockParam;
    for (turn, message) in messages.iter_mut().enumerate() {
        let missive_protocol::messages::MessageContent::Blocks(blocks) = &mut message.content
        else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            let ContentBlockParam::ContainerUpload { file_id, .. } = block else {
                continue;
            };
            let at = format!("messages.{turn}.content.{j}.file_id");
            let files = files.ok_or_else(|| format!("{at}: this server has no Files API"))?;
            let (name, bytes) = files
                .load(file_id)
                .await
                .map_err(|e| format!("{at}: {e}"))?;
            let name: String = std::path::Path::new(&name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .unwrap_or_else(|| file_id.clone());
            std::fs::write(container.dir.join(&name), bytes)
                .map_err(|e| format!("{at}: copying into the container: {e}"))?;
            *block = ContentBlockParam::Text {
                text: format!(
                    "[The file {name} is in the code execution container at /workspace/{name}]"
                ),
                cache_control: None,
                citations: None,
            };
        }
    }
    Ok(())
}

/// Connects to the MCP servers the request names and puts the tools it selects in place
/// of its `mcp_toolset` entries. With no toolset at all, the older shape applies: every
/// server's tools, as its `tool_configuration` allows.
async fn connect_mcp(
    request: &mut MessagesRequest,
    toolbox: &Toolbox,
    allowlist: Option<&[String]>,
    found: &mut Vec<ServerTool>,
) -> Result<Vec<mcp::Session>, String> {
    let entries = mcp::servers(request.mcp_servers.as_ref());
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
    let selections: Vec<(usize, mcp::Selection, Option<CacheControl>)> = if toolsets.is_empty() {
        (0..entries.len())
            .map(|i| (i, mcp::Selection::from_entry(&entries[i]), None))
            .collect()
    } else {
        toolsets
            .iter()
            .filter_map(|set| {
                let name = set.settings.get("mcp_server_name")?.as_str()?;
                let i = entries.iter().position(|e| e.name == name)?;
                Some((
                    i,
                    mcp::Selection::from_toolset(&set.settings),
                    set.cache_control.clone(),
                ))
            })
            .collect()
    };
    let mut sessions = Vec::new();
    for (i, selection, cache_control) in selections {
        let entry = &entries[i];
        let session = mcp::Session::connect(
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
