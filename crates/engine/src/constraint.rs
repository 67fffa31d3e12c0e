//! Constrained decoding with llguidance: the grammars that make tool calls and structured
//! output valid by construction, compiled once per distinct grammar and cached.
//!
//! Tool calls use the format the chat template teaches, e.g. Hermes/Qwen's
//! `<tool_call>\n{"name": "…", "arguments": {…}}\n</tool_call>`. The grammar starts
//! *after* the marker that opens calls (the format's trigger), so it applies lazily in
//! `auto` mode (free text costs nothing until the model opens a call) and from the first
//! token when a call is forced (the prompt then already ends with the marker).

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

use crate::output::tool_calls::{self, Markers};
use crate::output::{harmony, named_call};
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
    /// The single token of each format's trigger, where the vocabulary has one.
    triggers: Vec<(&'static str, LlamaToken)>,
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
            triggers: [
                &tool_calls::HERMES,
                &tool_calls::DEEPSEEK,
                &tool_calls::LLAMA,
                &tool_calls::MISTRAL,
                &tool_calls::MISTRAL_ARGS,
                &tool_calls::HARMONY,
            ]
            .iter()
            .filter_map(|m| Some((m.trigger(), crate::model::single_token(model, m.trigger())?)))
            .collect(),
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
                None => self.call_rule(i, tool, format)?,
            });
        }
        let single = format.one_call_per_turn()
            || request
                .tool_choice
                .as_ref()
                .is_some_and(ToolChoice::disables_parallel_tool_use);
        let frame = Frame::of(format);
        let mut lark = tool_calls_grammar(&calls, first_call(request, &calls), single, &frame);
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
        let trigger = format.markers().trigger();
        Ok(match forced {
            true => Constraint::FromStart(matcher),
            false => Constraint::AfterToolOpen {
                matcher,
                open: self
                    .triggers
                    .iter()
                    .find(|(text, _)| *text == trigger)
                    .map(|(_, token)| *token),
            },
        })
    }

    /// The Lark rule body of one call of `tool`. A schema llguidance cannot enforce fails
    /// a `strict` tool (it was promised); other tools fall back to any JSON object.
    fn call_rule(
        &self,
        index: usize,
        tool: &Tool,
        format: ToolFormat,
    ) -> Result<String, BackendError> {
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
        Ok(match format {
            ToolFormat::DeepSeek => {
                let head = lark_string(&format!("{}{}", tool.name, named_call::V3_1.sep));
                format!("{head} {arguments}")
            }
            ToolFormat::Harmony => {
                let head = lark_string(&format!("{}{}", tool.name, harmony::CALL_HEAD_END));
                format!("{head} {arguments}")
            }
            ToolFormat::MistralArgs => {
                let head = lark_string(&format!("{}{}", tool.name, named_call::MISTRAL_ARGS.sep));
                format!("{head} {arguments}")
            }
            ToolFormat::DeepSeekR1 => {
                let head = lark_string(&format!(
                    "function{}{}{}",
                    named_call::R1.sep,
                    tool.name,
                    named_call::FENCE_OPEN
                ));
                format!(
                    "{head} {arguments} {}",
                    lark_string(named_call::FENCE_CLOSE)
                )
            }
            _ => {
                let name = serde_json::to_string(&tool.name).unwrap_or_default();
                let key = match format {
                    ToolFormat::Llama3Json => "parameters",
                    _ => "arguments",
                };
                let head = lark_string(&format!("{{\"name\": {name}, \"{key}\": "));
                format!("{head} {arguments} \"}}\"")
            }
        })
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

/// A Lark string literal of `text`.
fn lark_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The literal text around a format's calls, after its trigger.
struct Frame {
    /// Before the first call.
    head: String,
    /// After each call.
    tail: String,
    /// Before each further call.
    more: String,
    /// After the last call.
    end: String,
    /// Whether the last call's `tail` may be left out, the end of the turn closing it.
    /// A small model that wants to end its turn right after a call's object, when the
    /// grammar insists on the closing marker, writes the marker in unfamiliar pieces and
    /// then, off its usual path, often goes on to call more tools until `max_tokens`.
    open_end: bool,
}

impl Frame {
    fn of(format: ToolFormat) -> Self {
        let Markers {
            open,
            close,
            block,
            array,
            ..
        } = *format.markers();
        if array {
            // Mistral: ` [` as its template writes it, the calls separated by `, `, `]`.
            return Self {
                head: " [".to_owned(),
                tail: String::new(),
                more: ", ".to_owned(),
                end: "]".to_owned(),
                open_end: false,
            };
        }
        let bare = |tail: &str| Self {
            head: String::new(),
            tail: tail.to_owned(),
            more: String::new(),
            end: String::new(),
            open_end: false,
        };
        match format {
            // The call object is the rest of the reply; one per turn.
            ToolFormat::Llama3Json => return bare(""),
            // The trigger ends just before the name; `<|call|>` ends the call and the turn.
            ToolFormat::Harmony => return bare(close),
            // Each call opens with the marker and ends with its object.
            ToolFormat::MistralArgs => {
                return Self {
                    more: open.to_owned(),
                    ..bare("")
                }
            }
            _ => {}
        }
        match block {
            // DeepSeek: the block holds the calls, each in its own markers (R1 puts each
            // on its own line).
            Some((_, block_close)) => Self {
                head: open.to_owned(),
                tail: close.to_owned(),
                more: match format {
                    ToolFormat::DeepSeekR1 => format!("\n{open}"),
                    _ => open.to_owned(),
                },
                end: block_close.to_owned(),
                open_end: false,
            },
            // GLM writes the name right after the marker; the others start a new line.
            None => {
                let lead = match format {
                    ToolFormat::GlmXml => "",
                    _ => "\n",
                };
                Self {
                    head: lead.to_owned(),
                    tail: format!("\n{close}"),
                    more: format!("\n{open}{lead}"),
                    end: String::new(),
                    open_end: true,
                }
            }
        }
    }
}

/// The grammar of everything after the format's trigger: one call, then (unless `single`)
/// further calls, then the end of the reply.
fn tool_calls_grammar(
    calls: &[String],
    first: Option<usize>,
    single: bool,
    frame: &Frame,
) -> String {
    let mut lark = String::new();
    let first_rule = match first {
        Some(i) => format!("call_{i}"),
        None => "call".to_owned(),
    };
    // The markers as text: a vocabulary may hold them as ordinary tokens (Qwen does), and
    // a grammar literal matches them however they are tokenised.
    let literal = |text: &str| (!text.is_empty()).then(|| lark_string(text));
    let tail = literal(&frame.tail);
    let last_tail = match frame.open_end {
        true => tail.as_ref().map(|tail| format!("{tail}?")),
        false => tail.clone(),
    };
    let more = (!single).then(|| "more*".to_owned());
    let start: Vec<String> = [
        literal(&frame.head),
        Some(first_rule),
        more,
        last_tail,
        literal(&frame.end),
    ]
    .into_iter()
    .flatten()
    .collect();
    lark.push_str(&format!("start: {}\n", start.join(" ")));
    if !single {
        let more: Vec<String> = [tail, literal(&frame.more), Some("call".to_owned())]
            .into_iter()
            .flatten()
            .collect();
        lark.push_str(&format!("more: {}\n", more.join(" ")));
    }
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
        let hermes = Frame::of(ToolFormat::Hermes);
        let lark = tool_calls_grammar(&calls, Some(0), true, &hermes);
        assert!(
            lark.starts_with("start: \"\\n\" call_0 \"\\n</tool_call>\"?\n"),
            "{lark}"
        );
        let lark = tool_calls_grammar(&calls, None, false, &hermes);
        assert!(lark.contains("call more* \"\\n</tool_call>\"?\n"), "{lark}");
        assert!(
            lark.contains("more: \"\\n</tool_call>\" \"\\n<tool_call>\\n\" call"),
            "{lark}"
        );

        // DeepSeek: after the block's opening, each call in its own markers, then the
        // block's end.
        let deepseek = Frame::of(ToolFormat::DeepSeek);
        let lark = tool_calls_grammar(&calls, None, false, &deepseek);
        assert!(
            lark.starts_with("start: \"<｜tool▁call▁begin｜>\" call more* \"<｜tool▁call▁end｜>\" \"<｜tool▁calls▁end｜>\"\n"),
            "{lark}"
        );
        assert!(
            lark.contains("more: \"<｜tool▁call▁end｜>\" \"<｜tool▁call▁begin｜>\" call\n"),
            "{lark}"
        );

        // Mistral: one array after the marker, the calls separated by commas.
        let mistral = Frame::of(ToolFormat::Mistral);
        let lark = tool_calls_grammar(&calls, None, false, &mistral);
        assert!(
            lark.starts_with("start: \" [\" call more* \"]\"\n"),
            "{lark}"
        );
        assert!(lark.contains("more: \", \" call\n"), "{lark}");
        let lark = tool_calls_grammar(&calls, Some(0), true, &mistral);
        assert!(lark.starts_with("start: \" [\" call_0 \"]\"\n"), "{lark}");

        // Mistral's `[ARGS]` form: calls one after another, each after the marker.
        let lark = tool_calls_grammar(&calls, None, false, &Frame::of(ToolFormat::MistralArgs));
        assert!(lark.starts_with("start: call more*\n"), "{lark}");
        assert!(lark.contains("more: \"[TOOL_CALLS]\" call\n"), "{lark}");

        // Harmony: the name follows the trigger; `<|call|>` ends the one call.
        let harmony = Frame::of(ToolFormat::Harmony);
        let lark = tool_calls_grammar(&calls, None, true, &harmony);
        assert!(lark.starts_with("start: call \"<|call|>\"\n"), "{lark}");
    }

    /// Whether `text` is a whole reply the grammar accepts, on a vocabulary of single
    /// bytes (so any text is one way of tokenising it).
    fn accepts(lark: &str, text: &str) -> bool {
        let factory = ParserFactory::new_simple(&toktrie::ApproximateTokEnv::single_byte_env())
            .expect("a factory over single bytes");
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_owned()))
            .expect("the grammar compiles");
        let mut matcher = Matcher::new(Ok(parser));
        let bytes: Vec<u32> = text.bytes().map(u32::from).collect();
        matcher.consume_tokens(&bytes).is_ok() && matcher.is_accepting().unwrap_or(false)
    }

    #[test]
    fn the_turns_end_may_close_the_last_call_where_markers_close_each_call() {
        let calls = vec![format!(
            "{} %json {{\"type\": \"object\"}} \"}}\"",
            lark_string("{\"name\": \"a\", \"arguments\": ")
        )];
        let call = "{\"name\": \"a\", \"arguments\": {}}";
        for single in [true, false] {
            let hermes =
                tool_calls_grammar(&calls, Some(0), single, &Frame::of(ToolFormat::Hermes));
            assert!(
                accepts(&hermes, &format!("\n{call}\n</tool_call>")),
                "{hermes}"
            );
            assert!(accepts(&hermes, &format!("\n{call}")), "{hermes}");
            assert!(!accepts(&hermes, &format!("\n{call}\n</tool")), "{hermes}");
            assert_eq!(
                accepts(
                    &hermes,
                    &format!("\n{call}\n</tool_call>\n<tool_call>\n{call}")
                ),
                !single,
                "{hermes}"
            );
        }
        // Only the last call's marker may be left out.
        let hermes = tool_calls_grammar(&calls, None, false, &Frame::of(ToolFormat::Hermes));
        assert!(!accepts(&hermes, &format!("\n{call}\n<tool_call>\n{call}")));
        // A block of calls still needs its closing markers.
        let deepseek = tool_calls_grammar(&calls, None, false, &Frame::of(ToolFormat::DeepSeek));
        let open = "<｜tool▁call▁begin｜>";
        let closed = format!("{open}{call}<｜tool▁call▁end｜>");
        assert!(accepts(&deepseek, &format!("{closed}<｜tool▁calls▁end｜>")));
        assert!(accepts(
            &deepseek,
            &format!("{closed}{closed}<｜tool▁calls▁end｜>")
        ));
        assert!(!accepts(&deepseek, &format!("{open}{call}")));
        assert!(!accepts(&deepseek, &closed));
    }

    #[test]
    fn json_rule_keeps_a_schema_layout_override() {
        let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
        assert!(json_rule(&own).contains("\"whitespace_flexible\":true"));
        assert!(json_rule(&json!({"type": "string"})).contains("\"key_separator\":\": \""));
    }
}
