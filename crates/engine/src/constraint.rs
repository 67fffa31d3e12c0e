//! Constrained decoding with llguidance: the grammars that make tool calls and structured
//! output valid by construction, compiled once per distinct grammar and cached.
//!
//! Tool calls use the Hermes/Qwen format the chat template teaches:
//! `<tool_call>\n{"name": "…", "arguments": {…}}\n</tool_call>`. The grammar starts
//! *after* the opening marker, so it applies lazily in `auto` mode (free text costs
//! nothing until the model opens a call) and from the first token when a call is forced
//! (the prompt then already ends with the marker).

use std::collections::HashMap;
use std::sync::Mutex;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory, TokenParser};
use missive_backend::client_tools::{self, ToolKind};
use missive_backend::{BackendError, GenerateRequest};
use missive_protocol::tools::{OutputFormat, Tool, ToolChoice};
use serde_json::{json, Value};

use crate::output::tool_calls::{CLOSE, OPEN};
use crate::template::ToolFormat;

mod xml_rules;

/// Distinct grammars kept compiled; past this the cache starts over. Agents resend the
/// same tools every turn, so a small cache already catches nearly every request.
const CACHE_LIMIT: usize = 256;

/// How a job's sampling is constrained.
#[derive(Default)]
pub(crate) enum Constraint {
    #[default]
    Free,
    /// The whole reply must match (structured output; forced tool calls).
    FromStart(Matcher),
    /// The reply is free until the model opens a tool call; the call then must match.
    /// `open` is the marker's token where the vocabulary has one; otherwise the call opens
    /// when the marker's text is decoded.
    AfterToolOpen {
        matcher: Matcher,
        open: Option<LlamaToken>,
    },
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Free => "Free",
            Self::FromStart(_) => "FromStart",
            Self::AfterToolOpen { .. } => "AfterToolOpen",
        })
    }
}

/// The grammar compiler of one model.
pub(crate) struct Grammars {
    factory: ParserFactory,
    compiled: Mutex<HashMap<String, TokenParser>>,
    /// The single token of `<tool_call>`, when the vocabulary has one.
    tool_open: Option<LlamaToken>,
}

/// The JSON layout of Python's `json.dumps`, which chat templates render tool calls with.
fn json_layout() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

impl Grammars {
    pub fn new(model: &LlamaModel) -> Result<Self, String> {
        let tok_env = LlamaSampler::llguidance_tok_env(model);
        let mut factory = ParserFactory::new_simple(&tok_env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self {
            factory,
            compiled: Mutex::new(HashMap::new()),
            tool_open: crate::model::single_token(model, OPEN),
        })
    }

    /// Compiles a Lark grammar and keeps it (outside the lock: compiling can take a while).
    fn compile(&self, lark: &str) -> Result<TokenParser, String> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_owned()))
            .map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.compiled.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(lark.to_owned(), parser.deep_clone());
        }
        Ok(parser)
    }

    /// Whether a grammar compiles, without building a matcher for it.
    fn compiles(&self, lark: &str) -> Result<(), String> {
        let cached = self
            .compiled
            .lock()
            .is_ok_and(|cache| cache.contains_key(lark));
        match cached {
            true => Ok(()),
            false => self.compile(lark).map(drop),
        }
    }

    /// A fresh matcher for a Lark grammar, compiling it on first use.
    fn matcher(&self, lark: &str) -> Result<Matcher, String> {
        let cached = self
            .compiled
            .lock()
            .ok()
            .and_then(|cache| cache.get(lark).map(TokenParser::deep_clone));
        let parser = match cached {
            Some(parser) => parser,
            None => self.compile(lark)?,
        };
        let matcher = Matcher::new(Ok(parser));
        match matcher.is_error() {
            true => Err(matcher.get_error().unwrap_or_default()),
            false => Ok(matcher),
        }
    }

    /// The constraint for a request: its output format, or its tool calls.
    pub fn for_request(
        &self,
        request: &GenerateRequest,
        tools_offered: bool,
        format: ToolFormat,
    ) -> Result<Constraint, BackendError> {
        if let Some(OutputFormat::JsonSchema { schema }) = &request.output_format {
            let lark = format!("start: {}\n", json_rule(schema));
            let matcher = self.matcher(&lark).map_err(|err| {
                BackendError::Unsupported(format!(
                    "output_config.format.schema: cannot be enforced: {}",
                    first_line(&err)
                ))
            })?;
            return Ok(Constraint::FromStart(matcher));
        }
        if !tools_offered {
            return Ok(Constraint::Free);
        }
        let mut calls = Vec::with_capacity(request.tools.len());
        let mut helpers = Vec::new();
        for (i, tool) in request.tools.iter().enumerate() {
            calls.push(match format.dialect() {
                Some(dialect) => self.xml_call_rule(i, tool, dialect, &mut helpers)?,
                None => self.call_rule(i, tool)?,
            });
        }
        let single = request
            .tool_choice
            .as_ref()
            .is_some_and(ToolChoice::disables_parallel_tool_use);
        // GLM writes the name right after the marker; the others start a new line.
        let lead = match format {
            ToolFormat::GlmXml => "",
            _ => "\\n",
        };
        let mut lark = tool_calls_grammar(&calls, first_call(request, &calls), single, lead);
        for helper in helpers {
            lark.push_str(&helper);
            lark.push('\n');
        }
        let matcher = self
            .matcher(&lark)
            .map_err(|err| BackendError::Unsupported(format!("tools: {}", first_line(&err))))?;
        let forced = matches!(
            request.tool_choice,
            Some(ToolChoice::Any { .. } | ToolChoice::Tool { .. })
        );
        Ok(match forced {
            true => Constraint::FromStart(matcher),
            false => Constraint::AfterToolOpen {
                matcher,
                open: self.tool_open,
            },
        })
    }

    /// The Lark rule body of one call of `tool`. A schema llguidance cannot enforce fails
    /// a `strict` tool (it was promised); other tools fall back to any JSON object.
    fn call_rule(&self, index: usize, tool: &Tool) -> Result<String, BackendError> {
        let name = serde_json::to_string(&tool.name).unwrap_or_default();
        let schema = match client_tools::kind(tool) {
            ToolKind::Client(schema) => schema,
            ToolKind::Server(_) | ToolKind::Unknown(_) => json!({"type": "object"}),
        };
        let enforceable = self.compiles(&format!("start: {}\n", json_rule(&schema)));
        let arguments = match (enforceable, tool.strict == Some(true)) {
            (Ok(_), _) => json_rule(&schema),
            (Err(err), true) => {
                return Err(BackendError::Unsupported(format!(
                    "tools.{index}.input_schema: cannot be enforced for a strict tool: {}",
                    first_line(&err)
                )))
            }
            (Err(_), false) => json_rule(&json!({"type": "object"})),
        };
        // The call's frame is literal text, exactly as the template shows the model.
        let head = serde_json::to_string(&format!("{{\"name\": {name}, \"arguments\": "))
            .unwrap_or_default();
        Ok(format!("{head} {arguments} \"}}\""))
    }
}

impl Grammars {
    /// The Lark rule body of one call of `tool` in the Qwen3-Coder XML form.
    fn xml_call_rule(
        &self,
        index: usize,
        tool: &Tool,
        dialect: &crate::output::xml_call::Dialect,
        helpers: &mut Vec<String>,
    ) -> Result<String, BackendError> {
        let schema = match client_tools::kind(tool) {
            ToolKind::Client(schema) => schema,
            ToolKind::Server(_) | ToolKind::Unknown(_) => json!({"type": "object"}),
        };
        let strict = tool.strict == Some(true);
        xml_rules::call_rule(
            index, &tool.name, &schema, strict, dialect, json_rule, helpers,
        )
        .map_err(|err| BackendError::Unsupported(format!("tools.{index}.input_schema.{}", err.0)))
    }
}

/// The rule the first call must match: the named tool's when one is forced.
fn first_call(request: &GenerateRequest, calls: &[String]) -> Option<usize> {
    match &request.tool_choice {
        Some(ToolChoice::Tool { name, .. }) => request
            .tools
            .iter()
            .position(|tool| &tool.name == name)
            .filter(|i| *i < calls.len()),
        _ => None,
    }
}

/// `%json` with the layout chat templates use, unless the schema sets its own.
fn json_rule(schema: &Value) -> String {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(json_layout);
    }
    format!("%json {schema}")
}

/// The grammar of everything after the first `<tool_call>` marker: one call, then
/// (unless `single`) further calls, then the end of the reply. `lead` (a Lark-escaped
/// string) comes between a marker and its call.
fn tool_calls_grammar(calls: &[String], first: Option<usize>, single: bool, lead: &str) -> String {
    let mut lark = String::new();
    let first_rule = match first {
        Some(i) => format!("call_{i}"),
        None => "call".to_owned(),
    };
    let more = if single { "" } else { " more*" };
    // The markers as text: a vocabulary may hold them as ordinary tokens (Qwen does), and
    // a grammar literal matches them however they are tokenised.
    let start = match lead {
        "" => String::new(),
        lead => format!("\"{lead}\" "),
    };
    lark.push_str(&format!(
        "start: {start}{first_rule} \"\\n{CLOSE}\"{more}\n"
    ));
    lark.push_str(&format!("more: \"\\n{OPEN}{lead}\" call \"\\n{CLOSE}\"\n"));
    let alternatives: Vec<String> = (0..calls.len()).map(|i| format!("call_{i}")).collect();
    lark.push_str(&format!("call: {}\n", alternatives.join(" | ")));
    for (i, rule) in calls.iter().enumerate() {
        lark.push_str(&format!("call_{i}: {rule}\n"));
    }
    lark
}

fn first_line(err: &str) -> &str {
    err.lines().next().unwrap_or(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_frames_each_call_as_the_template_does() {
        let calls =
            vec!["\"{\\\"name\\\": \\\"a\\\", \\\"arguments\\\": \" %json {} \"}\"".to_owned()];
        let lark = tool_calls_grammar(&calls, Some(0), true, "\\n");
        assert!(
            lark.starts_with("start: \"\\n\" call_0 \"\\n</tool_call>\"\n"),
            "{lark}"
        );
        let lark = tool_calls_grammar(&calls, None, false, "\\n");
        assert!(lark.contains("</tool_call>\" more*"), "{lark}");
        assert!(lark.contains("more: \"\\n<tool_call>\\n\" call"), "{lark}");
    }

    #[test]
    fn json_rule_keeps_a_schema_layout_override() {
        let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
        assert!(json_rule(&own).contains("\"whitespace_flexible\":true"));
        assert!(json_rule(&json!({"type": "string"})).contains("\"key_separator\":\": \""));
    }
}
