//! What a request's code execution needs before the model runs: the `code_execution`
//! tool as the two tools the model calls, the container (`container`, or a new one), and
//! the files of `container_upload` blocks copied into it.

use std::sync::Arc;

use missive_protocol::tools::{Tool, ToolChoice};
use missive_protocol::MessagesRequest;

use crate::code_execution;
use crate::spec::{self, Kind, ServerTool};
use crate::{Files, Tenant, Toolbox};

/// The versions run, all as `code_execution_20250825` runs (bash and the text editor). The
/// later two add REPL state kept for programmatic tool calling, which this server refuses
/// by name (`allowed_callers`), so without it they behave as the first.
const CODE_EXECUTION: [&str; 3] = [
    "code_execution_20250825",
    "code_execution_20260120",
    "code_execution_20260521",
];

/// The request's `code_execution` tool, as the two tools the model calls, and its
/// container (named by `container`, or new), with `container_upload` files copied in.
pub(crate) async fn prepare(
    request: &mut MessagesRequest,
    toolbox: &Toolbox,
    tenant: Tenant<'_>,
    found: &mut Vec<ServerTool>,
) -> Result<Option<code_execution::Container>, String> {
    let tools = request.tools.get_or_insert_with(Vec::new);
    let at = tools.iter().position(|t| {
        t.kind
            .as_deref()
            .is_some_and(|k| CODE_EXECUTION.contains(&k))
    });
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
            Some(i) => format!(
                "tools.{i}.type: `{}`",
                tools[i].kind.as_deref().unwrap_or_default()
            ),
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
