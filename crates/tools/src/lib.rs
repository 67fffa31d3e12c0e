//! Tools the server runs for the model, as the Claude API runs them: `web_fetch`,
//! `web_search`, code execution, MCP toolsets, tool search and the advisor. A request's
//! server tools are read and checked ([`prepare`]), the model is given client-tool
//! definitions in their place, and [`rounds::ToolRunner`] runs the model → tool → model
//! loop inside one call.
//!
//! Outbound requests go through [`fetch`], which refuses private, loopback, link-local,
//! CGNAT and metadata addresses however they are spelled or resolved.

pub mod advisor;
pub mod code_execution;
mod code_request;
pub mod fetch;
pub mod history;
pub mod mcp;
mod mcp_sse;
pub mod pdf;
pub mod public_url;
pub mod rounds;
pub mod sandbox;
pub mod spec;
pub mod tool_search;
pub mod web_fetch;
pub mod web_search;

use std::sync::Arc;
use std::time::Duration;

use missive_backend::Backend;
use missive_protocol::content::ContentBlock;
use missive_protocol::context::IterationUsage;
use missive_protocol::tools::ToolChoice;
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

/// Where the tokens of a model a tool runs (the advisor's) are billed, as each run ends:
/// a ledger row of their own, at that model's price.
#[async_trait::async_trait]
pub trait Meter: Send + Sync {
    async fn charge(&self, step: &IterationUsage) -> Result<(), String>;
}

/// Finds the model an advisor names, for the tenant whose request it is; a refusal says
/// why (not served, switched off).
pub type Models<'a> = &'a (dyn Fn(&str) -> Result<Arc<dyn Backend>, String> + Sync);

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
            Kind::ToolSearch { .. } => return tool_search::error(&tool_use_id, code, None),
            Kind::Advisor { .. } => return advisor::error(&tool_use_id, code),
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
#[derive(Default)]
pub struct Prepared {
    pub tools: Vec<ServerTool>,
    /// Connections to the request's MCP servers, open until the reply ends.
    pub sessions: Vec<mcp::Session>,
    /// The code execution container, when the request runs code.
    pub container: Option<code_execution::Container>,
    /// The advisor's model, when the request has an advisor.
    pub advisor: Option<Arc<dyn Backend>>,
}

/// Whose request is prepared: the workspace (containers are per workspace) and its files.
#[derive(Clone, Copy, Default)]
pub struct Tenant<'a> {
    pub workspace: &'a str,
    /// The workspace's URL allowlist.
    pub allowlist: Option<&'a [String]>,
    pub files: Option<&'a Arc<dyn Files>>,
    /// The models an advisor may name; `None`: an advisor is refused.
    pub models: Option<Models<'a>>,
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
    let mut advisor = None;
    for (i, tool) in request.tools.iter_mut().flatten().enumerate() {
        let Some(server) = spec::parse(i, tool)? else {
            continue;
        };
        if let Kind::Advisor { model, .. } = &server.kind {
            let models = tenant.models.ok_or_else(|| {
                format!(
                    "tools.{i}.type: `{}` is not served on this path",
                    advisor::TYPE
                )
            })?;
            advisor = Some(models(model).map_err(|why| format!("tools.{i}.model: {why}"))?);
        }
        if matches!(server.kind, Kind::WebSearch { .. }) && toolbox.search.is_none() {
            return Err(format!(
                "tools.{i}.type: `{}` needs a search service, and none is configured on this server (`[server_tools.search]`, docs/configuration.md)",
                tool.kind.as_deref().unwrap_or("web_search")
            ));
        }
        *tool = spec::as_client_tool(tool, &server.kind);
        found.push(server);
    }
    let container = code_request::prepare(request, toolbox, tenant, &mut found).await?;
    let sessions = mcp::connect_all(request, toolbox, allowlist, &mut found).await?;
    if found
        .iter()
        .any(|t| matches!(t.kind, Kind::ToolSearch { .. }))
    {
        let deferred = Arc::new(tool_search::Catalog::of(request.tools.iter().flatten()));
        for tool in &mut found {
            if let Kind::ToolSearch { catalog, .. } = &mut tool.kind {
                *catalog = deferred.clone();
            }
        }
    }
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
        advisor,
    })
}
