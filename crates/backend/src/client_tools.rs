//! Anthropic-defined client tools (`bash_20250124`, the text editors, `memory_20250818`,
//! computer use): the client runs them, the model calls them, and the request names only
//! the type. A model that is not Claude has never seen them, so backends that render
//! tools themselves give it the input schema Anthropic publishes for each type. Server
//! tools (web search and fetch, code execution, tool search, MCP toolsets) are run by the
//! API itself: a backend that cannot run them refuses them by type, never drops them.

use missive_protocol::tools::Tool;
use serde_json::{json, Value};

/// What a tool is to a backend that renders tools itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolKind {
    /// A tool the request defines, or an Anthropic client tool: its input schema.
    Client(Value),
    /// A tool the Claude API runs server-side; the type names it.
    Server(String),
    /// A type nobody publishes.
    Unknown(String),
}

/// How `tool` is to be rendered.
pub fn kind(tool: &Tool) -> ToolKind {
    if let Some(schema) = &tool.input_schema {
        return ToolKind::Client(schema.clone());
    }
    let Some(kind) = tool.kind.as_deref() else {
        return ToolKind::Client(json!({"type": "object"}));
    };
    if let Some(schema) = published_schema(kind) {
        return ToolKind::Client(schema);
    }
    const SERVER: [&str; 8] = [
        "web_search_",
        "web_fetch_",
        "code_execution_",
        "bash_code_execution_",
        "text_editor_code_execution_",
        "tool_search_tool_",
        "mcp_toolset",
        "advisor_",
    ];
    if SERVER.iter().any(|prefix| kind.starts_with(prefix)) {
        ToolKind::Server(kind.to_owned())
    } else {
        ToolKind::Unknown(kind.to_owned())
    }
}

/// The refusal a backend that cannot run `tool` gives, naming it; `None` for tools it can
/// render.
pub fn refusal(index: usize, tool: &Tool, backend: &str) -> Option<String> {
    match kind(tool) {
        ToolKind::Client(_) => None,
        ToolKind::Server(kind) => Some(format!(
            "tools.{index}.type: `{kind}` is a server tool, which {backend} does not run; remove it or route the model to the Claude API"
        )),
        ToolKind::Unknown(kind) => Some(format!(
            "tools.{index}.type: unknown tool type `{kind}`"
        )),
    }
}

/// The input schema Anthropic publishes for a client tool type (tool reference, "Bash
/// tool", "Text editor tool", "Memory tool", "Computer use tool").
fn published_schema(kind: &str) -> Option<Value> {
    let schema = match kind {
        "bash_20241022" | "bash_20250124" => json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The bash command to run. Required unless the tool is being restarted."},
                "restart": {"type": "boolean", "description": "Specifying true will restart this tool. Otherwise, leave this unspecified."}
            }
        }),
        "text_editor_20241022" | "text_editor_20250124" => {
            editor(&["view", "create", "str_replace", "insert", "undo_edit"])
        }
        "text_editor_20250429" | "text_editor_20250728" => {
            editor(&["view", "create", "str_replace", "insert"])
        }
        "memory_20250818" => json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "delete", "rename"]},
                "path": {"type": "string", "description": "Path under /memories."},
                "view_range": {"type": "array", "items": {"type": "integer"}},
                "file_text": {"type": "string"},
                "old_str": {"type": "string"},
                "new_str": {"type": "string"},
                "insert_line": {"type": "integer"},
                "insert_text": {"type": "string"},
                "old_path": {"type": "string"},
                "new_path": {"type": "string"}
            },
            "required": ["command"]
        }),
        "computer_20241022" => computer(&[
            "key",
            "type",
            "mouse_move",
            "left_click",
            "left_click_drag",
            "right_click",
            "middle_click",
            "double_click",
            "screenshot",
            "cursor_position",
        ]),
        "computer_20250124" => computer(COMPUTER_20250124),
        // The 20251124 version adds `zoom`.
        "computer_20251124" => computer(&[COMPUTER_20250124, &["zoom"]].concat()),
        _ => return None,
    };
    Some(schema)
}

const COMPUTER_20250124: &[&str] = &[
    "key",
    "hold_key",
    "type",
    "cursor_position",
    "mouse_move",
    "left_mouse_down",
    "left_mouse_up",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "scroll",
    "wait",
    "screenshot",
];

fn editor(commands: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": commands},
            "path": {"type": "string", "description": "Absolute path to the file or directory."},
            "file_text": {"type": "string", "description": "Content of the file to create."},
            "old_str": {"type": "string", "description": "Text to replace; must match exactly once."},
            "new_str": {"type": "string", "description": "Replacement text, or the text to insert."},
            "insert_line": {"type": "integer", "description": "Line after which to insert."},
            "view_range": {"type": "array", "items": {"type": "integer"}, "description": "First and last line to view."}
        },
        "required": ["command", "path"]
    })
}

fn computer(actions: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": actions},
            "coordinate": {"type": "array", "items": {"type": "integer"}},
            "start_coordinate": {"type": "array", "items": {"type": "integer"}},
            "text": {"type": "string"},
            "duration": {"type": "number"},
            "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
            "scroll_amount": {"type": "integer"}
        },
        "required": ["action"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(value: Value) -> Tool {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn client_tool_types_get_their_published_schema() {
        let bash = tool(json!({"type": "bash_20250124", "name": "bash"}));
        let ToolKind::Client(schema) = kind(&bash) else {
            panic!("bash is a client tool")
        };
        assert_eq!(schema["properties"]["command"]["type"], "string");
        let editor =
            tool(json!({"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}));
        let ToolKind::Client(schema) = kind(&editor) else {
            panic!("the editor is a client tool")
        };
        assert_eq!(schema["required"], json!(["command", "path"]));
        assert!(refusal(0, &editor, "this model").is_none());
    }

    #[test]
    fn server_tools_and_unknown_types_are_refused_by_name() {
        let search = tool(json!({"type": "web_search_20250305", "name": "web_search"}));
        let refused = refusal(2, &search, "the embedded engine").unwrap();
        assert!(
            refused.starts_with("tools.2.type: `web_search_20250305` is a server tool"),
            "{refused}"
        );
        let odd = tool(json!({"type": "teleport_20990101", "name": "t"}));
        assert_eq!(
            refusal(0, &odd, "x").unwrap(),
            "tools.0.type: unknown tool type `teleport_20990101`"
        );
        let custom = tool(json!({"name": "w", "input_schema": {"type": "object"}}));
        assert_eq!(kind(&custom), ToolKind::Client(json!({"type": "object"})));
    }
}
