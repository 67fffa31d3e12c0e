//! Chat templates: the model's own Jinja template from the GGUF, rendered with minijinja
//! the way Hugging Face's `apply_chat_template` renders it.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::output::named_call;
use crate::output::tool_calls::{self, CallBody, Markers};
use crate::output::xml_call::TextParams;

/// How a model is taught to call tools (`[models.NAME] tool_format` overrides detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFormat {
    /// The template renders tools and calls itself in the Hermes `<tool_call>` form
    /// (Qwen2.5, Qwen3).
    Hermes,
    /// The template knows no tools: Missive describes them in the system turn and teaches
    /// the same `<tool_call>` form (`described_tools`). Gemma 3 and plain chat templates.
    Described,
    /// `<tool_call>` around `<function=NAME>` and one `<parameter=KEY>` per argument
    /// (Qwen3-Coder, Qwen3.5), rendered by the template itself.
    QwenXml,
    /// `<tool_call>NAME` and one `<arg_key>`/`<arg_value>` pair per argument (GLM 4.5 and
    /// later), rendered by the template itself.
    GlmXml,
    /// `<｜tool▁calls▁begin｜>`, then per call `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}`
    /// `<｜tool▁call▁end｜>`, then `<｜tool▁calls▁end｜>` (DeepSeek V3.1). The template renders
    /// calls and results but not the tool list, which Missive describes in the system
    /// prompt (`described_tools::deepseek`).
    #[serde(rename = "deepseek")]
    DeepSeek,
    /// DeepSeek R1's form inside the same markers: `function<｜tool▁sep｜>NAME`, then the
    /// arguments in a ```json fence; calls one per line. The tool list is Missive's too.
    #[serde(rename = "deepseek_r1")]
    DeepSeekR1,
    /// `{"name": …, "parameters": {…}}` as the whole reply, one call per turn (Llama
    /// 3.1–3.3), with tools and calls rendered by the template itself.
    #[serde(rename = "llama3_json")]
    Llama3Json,
    /// `[TOOL_CALLS]` and a JSON array of `{"name", "arguments"}` objects that runs to the
    /// end of the reply (Mistral Small 3.1, Devstral 2505), with tools, calls and results
    /// rendered by the template itself.
    Mistral,
    /// `[TOOL_CALLS]NAME[ARGS]{…}` per call, each ending with its object (Mistral Small
    /// 3.2, Devstral 2507), with tools, calls and results rendered by the template itself.
    MistralArgs,
    /// gpt-oss's harmony channels: the thought in `analysis`, the answer in `final`, one
    /// call per turn as `commentary to=functions.NAME <|constrain|>json<|message|>{…}`
    /// `<|call|>`; tools, calls and results rendered by the template itself.
    Harmony,
}

impl ToolFormat {
    /// The XML form a format writes its calls in, if it is one.
    pub(crate) fn dialect(self) -> Option<&'static crate::output::xml_call::Dialect> {
        match self {
            Self::QwenXml => Some(&crate::output::xml_call::QWEN),
            Self::GlmXml => Some(&crate::output::xml_call::GLM),
            Self::Hermes
            | Self::Described
            | Self::DeepSeek
            | Self::DeepSeekR1
            | Self::Llama3Json
            | Self::Mistral
            | Self::MistralArgs
            | Self::Harmony => None,
        }
    }

    /// The template renders one call per assistant turn, and the model writes one.
    pub(crate) fn one_call_per_turn(self) -> bool {
        matches!(self, Self::Llama3Json | Self::Harmony)
    }

    /// What ends a thought in this format (and what a spent thinking budget forces).
    pub(crate) fn thought_close(self) -> &'static str {
        match self {
            Self::Harmony => crate::output::harmony::THOUGHT_CLOSE,
            _ => missive_backend::reasoning::ThinkSplitter::CLOSE,
        }
    }

    /// The markers around the format's calls.
    pub(crate) fn markers(self) -> &'static Markers {
        match self {
            Self::DeepSeek | Self::DeepSeekR1 => &tool_calls::DEEPSEEK,
            Self::Llama3Json => &tool_calls::LLAMA,
            Self::Mistral => &tool_calls::MISTRAL,
            Self::MistralArgs => &tool_calls::MISTRAL_ARGS,
            Self::Harmony => &tool_calls::HARMONY,
            Self::Hermes | Self::Described | Self::QwenXml | Self::GlmXml => &tool_calls::HERMES,
        }
    }

    /// How a call's body is written between the markers.
    pub(crate) fn body(self, params: impl FnOnce() -> TextParams) -> CallBody {
        match (self, self.dialect()) {
            (_, Some(dialect)) => CallBody::Xml(params(), dialect),
            (Self::DeepSeek, None) => CallBody::Named(&named_call::V3_1),
            (Self::DeepSeekR1, None) => CallBody::Named(&named_call::R1),
            (Self::Harmony, None) => CallBody::Named(&named_call::HARMONY),
            (Self::MistralArgs, None) => CallBody::Named(&named_call::MISTRAL_ARGS),
            _ => CallBody::Json,
        }
    }
}

/// Used when a GGUF carries no template (base models such as Gemma 3 270M): the Gemma
/// family's turn format, so the model is still served instead of failing to load.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
{% if message.role == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message.role %}{% endif %}\
{% if role == 'system' %}{{ '<start_of_turn>user\\n' + message.content + '\\n\\n' }}\
{% else %}{{ '<start_of_turn>' + role + '\\n' + message.content + '<end_of_turn>\\n' }}{% endif %}\
{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

/// A message as chat templates expect it (`role`, `content`, optional `tool_calls`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TemplateMessage {
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// On a tool result: the id of the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An assistant turn's earlier thought, under both names templates read it by:
    /// `reasoning_content` (Qwen3, GLM) and `thinking` (gpt-oss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(String);

impl From<JinjaError> for TemplateError {
    fn from(err: JinjaError) -> Self {
        TemplateError(err.to_string())
    }
}

/// A compiled chat template with the special tokens it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    tool_format: ToolFormat,
    /// The template reasons in `<think>` tags (and may honour `enable_thinking`).
    reasons: bool,
    /// A system message after other turns renders where it stands.
    system_anywhere: bool,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    pub fn new(
        source: String,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // As transformers' `apply_chat_template` and llama.cpp render templates: a block
        // tag's own newline and indentation are not output (Qwen3-Coder's macros rely on it).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("tojson", python_tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        let harmony = source.contains(crate::output::harmony::CHANNEL);
        let tool_format = if harmony {
            ToolFormat::Harmony
        } else if source.contains(tool_calls::DEEPSEEK_SEP) {
            match source.contains("```json") {
                true => ToolFormat::DeepSeekR1,
                false => ToolFormat::DeepSeek,
            }
        } else if source.contains(named_call::MISTRAL_ARGS.sep) {
            ToolFormat::MistralArgs
        } else if source.contains(tool_calls::MISTRAL.open) {
            ToolFormat::Mistral
        } else if source.contains(tool_calls::LLAMA.open) {
            ToolFormat::Llama3Json
        } else if source.contains("<arg_key>") {
            ToolFormat::GlmXml
        } else if source.contains("<function=") {
            ToolFormat::QwenXml
        } else if source.contains(crate::output::tool_calls::OPEN) {
            ToolFormat::Hermes
        } else {
            ToolFormat::Described
        };
        // Harmony always reasons, in its analysis channel.
        let reasons = harmony || source.contains(missive_backend::reasoning::ThinkSplitter::OPEN);
        env.add_template_owned("chat", source)?;
        let mut template = Self {
            env,
            tool_format,
            reasons,
            system_anywhere: false,
            bos_token,
            eos_token,
        };
        template.system_anywhere = template.renders_system_anywhere();
        Ok(template)
    }

    /// Whether a system message after other turns renders where it stands (some templates
    /// raise, others drop it): tried once, on a probe conversation.
    fn renders_system_anywhere(&self) -> bool {
        const PROBE: &str = "system-turn-probe";
        let turn = |role: &str, content: &str| TemplateMessage {
            role: role.to_owned(),
            content: content.to_owned(),
            ..TemplateMessage::default()
        };
        let messages = [
            turn("user", "u"),
            turn("assistant", "a"),
            turn("system", PROBE),
            turn("user", "v"),
        ];
        self.render(&messages, &[], true, false)
            .is_ok_and(|out| out.find(PROBE).is_some_and(|at| out[..at].contains('a')))
    }

    /// Whether system messages render in place (else they are folded into the next turn).
    pub fn system_anywhere(&self) -> bool {
        self.system_anywhere
    }

    pub fn tool_format(&self) -> ToolFormat {
        self.tool_format
    }

    /// Overrides the detected tool format.
    pub fn with_tool_format(mut self, format: ToolFormat) -> Self {
        self.tool_format = format;
        self
    }

    pub fn reasons(&self) -> bool {
        self.reasons
    }

    /// Renders the conversation. `tools` are the Claude tool definitions converted to the
    /// OpenAI-style `{"type":"function","function":{…}}` objects templates are trained on.
    pub fn render(
        &self,
        messages: &[TemplateMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        enable_thinking: bool,
    ) -> Result<String, TemplateError> {
        self.render_with_effort(
            messages,
            tools,
            add_generation_prompt,
            enable_thinking,
            None,
        )
    }

    /// [`Self::render`], with `reasoning_effort` (`low`, `medium`, `high`) for templates
    /// that take one (gpt-oss's); `None` leaves the template's default.
    pub fn render_with_effort(
        &self,
        messages: &[TemplateMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
        enable_thinking: bool,
        reasoning_effort: Option<&str>,
    ) -> Result<String, TemplateError> {
        let template = self.env.get_template("chat")?;
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from_serialize(tools)
        };
        let rendered = template.render(minijinja::context! {
            messages => Value::from_serialize(messages),
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            enable_thinking => enable_thinking,
            // Left undefined when not given, so the template's own default applies.
            reasoning_effort => reasoning_effort.map_or(Value::UNDEFINED, Value::from),
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        })?;
        Ok(rendered)
    }
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`, which transformers gives templates (Mistral's and Llama's put
/// today's date in the system prompt): the current UTC time in Python's `strftime` codes.
fn strftime_now(format: String) -> String {
    strftime(&format, time::OffsetDateTime::now_utc())
}

fn strftime(format: &str, at: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = at.month();
        let weekday = at.weekday();
        match chars.next() {
            Some('Y') => out.push_str(&at.year().to_string()),
            Some('y') => out.push_str(&format!("{:02}", at.year().rem_euclid(100))),
            Some('m') => out.push_str(&format!("{:02}", u8::from(month))),
            Some('d') => out.push_str(&format!("{:02}", at.day())),
            Some('H') => out.push_str(&format!("{:02}", at.hour())),
            Some('M') => out.push_str(&format!("{:02}", at.minute())),
            Some('S') => out.push_str(&format!("{:02}", at.second())),
            Some('B') => out.push_str(&month.to_string()),
            Some('b') => out.push_str(&month.to_string()[..3]),
            Some('A') => out.push_str(&weekday.to_string()),
            Some('a') => out.push_str(&weekday.to_string()[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// JSON as Python's `json.dumps` writes it (`", "`, `": "`, keys in insertion order).
pub(crate) fn python_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    match value.serialize(&mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => value.to_string(),
    }
}

/// `tojson` as transformers defines it for chat templates: `json.dumps` with Python's
/// default separators (`", "`, `": "`), keys in insertion order, no HTML escaping.
fn python_tojson(value: Value, kwargs: Kwargs) -> Result<Value, JinjaError> {
    // transformers' filter takes `ensure_ascii` (GLM's templates pass `False`); unknown
    // arguments are an error, as in Jinja.
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    // Llama 3's templates pass `indent=4`: Python then writes one item per line, which
    // is serde_json's pretty layout with that indent.
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let written = match indent {
        Some(width) => {
            let indent = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&indent);
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, formatter,
            ))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonFormatter,
        )),
    };
    written.map_err(|err| JinjaError::new(ErrorKind::InvalidOperation, err.to_string()))?;
    let mut text = String::from_utf8(out)
        .map_err(|err| JinjaError::new(ErrorKind::InvalidOperation, err.to_string()))?;
    if ensure_ascii == Some(true) {
        text = text
            .encode_utf16()
            .map(|unit| match unit {
                0..=0x7f => char::from(unit as u8).to_string(),
                _ => format!("\\u{unit:04x}"),
            })
            .collect();
    }
    Ok(Value::from_safe_string(text))
}

/// Writes `, ` between items and `: ` after keys, as Python's `json.dumps` does.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> TemplateMessage {
        TemplateMessage {
            role: role.into(),
            content: content.into(),
            ..TemplateMessage::default()
        }
    }

    /// A system turn, two parallel weather calls with Claude ids, their results (which name
    /// those ids) and a user turn after them.
    fn parallel_weather_with_ids() -> Vec<TemplateMessage> {
        let call = |id: &str, city: &str| {
            serde_json::json!({"id": id, "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": city}}})
        };
        let mut both = msg("assistant", "");
        both.tool_calls = vec![call("toolu_1", "Paris"), call("toolu_2", "Rome")];
        let result = |id: &str, text: &str| TemplateMessage {
            tool_call_id: Some(id.into()),
            ..msg("tool", text)
        };
        vec![
            msg("system", "Be brief."),
            msg("user", "Weather in Paris and Rome?"),
            both,
            result("toolu_1", "sunny"),
            result("toolu_2", "rain"),
            msg("user", "Which is warmer?"),
        ]
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML.into(), String::new(), String::new()).unwrap();
        let out = t
            .render(&[msg("system", "S"), msg("user", "hi")], &[], true, true)
            .unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn a_template_that_takes_system_turns_anywhere_is_told_from_one_that_raises() {
        let chatml = ChatTemplate::new(CHATML.into(), String::new(), String::new()).unwrap();
        assert!(chatml.system_anywhere());
        let strict = "{% for message in messages %}{% if message['role'] == 'system' and not loop.first %}\
            {{ raise_exception('System message must be first') }}{% endif %}{{ message['content'] }}{% endfor %}";
        let strict = ChatTemplate::new(strict.into(), String::new(), String::new()).unwrap();
        assert!(!strict.system_anywhere());
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new("{{ x | tojson }}".into(), String::new(), String::new()).unwrap();
        let env_out = t
            .env
            .render_str("{{ x | tojson }}", minijinja::context! { x => Value::from_serialize(serde_json::json!({"b": [1, "<a>"], "a": null})) })
            .unwrap();
        assert_eq!(env_out, r#"{"b": [1, "<a>"], "a": null}"#);
    }

    #[test]
    fn enable_thinking_reaches_the_template_and_think_tags_mark_a_reasoner() {
        let source = "{% if not enable_thinking %}<think>\n\n</think>\n\n{% endif %}A";
        let t = ChatTemplate::new(source.into(), String::new(), String::new()).unwrap();
        assert!(t.reasons());
        assert_eq!(t.render(&[], &[], true, true).unwrap(), "A");
        assert_eq!(
            t.render(&[], &[], true, false).unwrap(),
            "<think>\n\n</think>\n\nA"
        );
    }

    /// Qwen3-Coder's own template (tests/templates/README.md): detected as the XML format,
    /// and a conversation with a system turn, tools, a call and its result renders as
    /// the model was trained on.
    #[test]
    fn qwen3_coder_renders_tools_calls_and_results_in_its_xml_form() {
        let source = include_str!("../tests/templates/Qwen3-Coder.jinja");
        let t = ChatTemplate::new(source.into(), String::new(), "<|im_end|>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::QwenXml);
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "write_file", "description": "Write a file",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string", "description": "Where"},
                "mode": {"type": "integer"}}, "required": ["path"]}}})];
        let mut call = msg("assistant", "Writing it.");
        call.tool_calls = vec![serde_json::json!({"type": "function", "function": {
            "name": "write_file", "arguments": {"path": "a.txt", "mode": 420}}})];
        let out = t
            .render(
                &[
                    msg("system", "Be brief."),
                    msg("user", "Save a.txt"),
                    call,
                    msg("tool", "written"),
                ],
                &tools,
                true,
                false,
            )
            .unwrap();
        for expected in [
            "<|im_start|>system\nBe brief.\n\nYou have access to the following functions:",
            "<function>\n<name>write_file</name>\n<description>Write a file</description>",
            "<parameter>\n<name>path</name>\n<type>string</type>\n<description>Where</description>\n</parameter>",
            "<|im_start|>assistant\nWriting it.\n\n<tool_call>\n<function=write_file>\n<parameter=path>\na.txt\n</parameter>\n<parameter=mode>\n420\n</parameter>\n</function>\n</tool_call><|im_end|>",
            "<|im_start|>user\n<tool_response>\nwritten\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
    }

    /// GLM 4.6's own template (tests/templates/README.md): detected as GLM's XML format;
    /// tools, an earlier thought, a call and its result render as the model was trained on.
    #[test]
    fn glm_renders_tools_thinking_calls_and_results_in_its_xml_form() {
        let source = include_str!("../tests/templates/GLM-4.6.jinja");
        let t = ChatTemplate::new(source.into(), String::new(), "<|endoftext|>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::GlmXml);
        assert!(t.reasons(), "its template thinks in <think> tags");
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}})];
        let mut call = msg("assistant", "<think>I need the weather.</think>Checking.");
        call.tool_calls = vec![serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Paris", "days": 3}}})];
        let out = t
            .render(
                &[
                    msg("system", "Be brief."),
                    msg("user", "Weather in Paris?"),
                    call,
                    msg("tool", "sunny"),
                ],
                &tools,
                true,
                true,
            )
            .unwrap();
        for expected in [
            "[gMASK]<sop><|system|>\n# Tools\n",
            "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"",
            "<|system|>\nBe brief.<|user|>\nWeather in Paris?<|assistant|>",
            "<think>I need the weather.</think>\nChecking.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
            "<|observation|>\n<tool_response>\nsunny\n</tool_response><|assistant|>",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
    }

    /// DeepSeek V3.1's own template (tests/templates/README.md): detected as DeepSeek's
    /// format; the tool list Missive adds to the system prompt, a call, its result, parallel
    /// calls and the thinking prompt render as the model was trained on.
    #[test]
    fn deepseek_renders_tools_calls_results_and_thinking_in_its_markers() {
        let source = include_str!("../tests/templates/DeepSeek-V3.1.jinja");
        let t = ChatTemplate::new(
            source.into(),
            "<｜begin▁of▁sentence｜>".into(),
            "<｜end▁of▁sentence｜>".into(),
        )
        .unwrap();
        assert_eq!(t.tool_format(), ToolFormat::DeepSeek);
        assert!(t.reasons(), "its template thinks in <think> tags");
        assert!(
            !t.system_anywhere(),
            "it gathers system messages at the start"
        );
        let function = |name: &str, arguments| serde_json::json!({"type": "function", "function": {"name": name, "arguments": arguments}});
        let mut call = msg("assistant", "");
        call.tool_calls = vec![function(
            "get_weather",
            serde_json::json!({"city": "Paris", "days": 3}),
        )];
        let mut both = msg("assistant", "Both.");
        both.tool_calls = vec![
            function("get_weather", serde_json::json!({"city": "Rome"})),
            function("get_time", serde_json::json!({})),
        ];
        let mut parts = crate::prompt::PromptParts {
            messages: vec![
                msg("system", "Be brief."),
                msg("user", "Weather in Paris?"),
                call,
                msg("tool", "sunny"),
                msg("user", "Rome, and the time?"),
                both,
                msg("tool", "rain"),
                msg("tool", "noon"),
                msg("user", "Thanks. Which was warmer?"),
            ],
            tools: vec![serde_json::json!({"type": "function", "function": {
                "name": "get_weather", "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})],
            prefill: None,
        };
        crate::described_tools::deepseek(&mut parts, &named_call::V3_1);
        let out = t.render(&parts.messages, &parts.tools, true, true).unwrap();
        for expected in [
            "<｜begin▁of▁sentence｜>Be brief.\n\n## Tools\nYou have access to the following tools:\n\n\
             ### get_weather\nDescription: The weather in a city\n\n\
             Parameters: {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}\n",
            "<｜User｜>Weather in Paris?<｜Assistant｜></think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>\
             get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"days\": 3}<｜tool▁call▁end｜>\
             <｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>",
            "<｜User｜>Rome, and the time?<｜Assistant｜></think>Both.<｜tool▁calls▁begin｜>\
             <｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Rome\"}<｜tool▁call▁end｜>\
             <｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>\
             <｜end▁of▁sentence｜><｜tool▁output▁begin｜>rain<｜tool▁output▁end｜>\
             <｜tool▁output▁begin｜>noon<｜tool▁output▁end｜>",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert!(
            out.ends_with("<｜User｜>Thanks. Which was warmer?<｜Assistant｜><think>"),
            "{out}"
        );
        let without = t
            .render(&parts.messages, &parts.tools, true, false)
            .unwrap();
        assert!(without.ends_with("<｜Assistant｜></think>"), "{without}");
    }

    /// DeepSeek R1's template (its Qwen 32B distillation; tests/templates/README.md):
    /// detected as R1's fenced form; calls and results render as the model was trained on,
    /// and the reply always opens a thought.
    #[test]
    fn deepseek_r1_renders_fenced_calls_and_opens_a_thought() {
        let source = include_str!("../tests/templates/DeepSeek-R1-Distill-Qwen-32B.jinja");
        let t = ChatTemplate::new(source.into(), String::new(), String::new()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::DeepSeekR1);
        assert!(t.reasons());
        let mut call = msg("assistant", "");
        call.tool_calls = vec![serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Oslo"}}})];
        let mut parts = crate::prompt::PromptParts {
            messages: vec![
                msg("user", "Weather in Oslo?"),
                call,
                msg("tool", "4 degrees"),
            ],
            tools: vec![serde_json::json!({"type": "function", "function": {
                "name": "get_weather", "parameters": {"type": "object"}}})],
            prefill: None,
        };
        crate::described_tools::deepseek(&mut parts, &named_call::R1);
        let out = t
            .render(&parts.messages, &parts.tools, true, false)
            .unwrap();
        for expected in [
            "## Tools\nYou have access to the following tools:\n\n### get_weather\n",
            "<｜tool▁call▁begin｜>function<｜tool▁sep｜>tool_call_name\n```json\ntool_call_arguments\n```<｜tool▁call▁end｜>",
            "<｜User｜>Weather in Oslo?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function\
             <｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>4 degrees<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        let asked = t.render(&[msg("user", "Hi")], &[], true, false).unwrap();
        assert!(asked.ends_with("<｜Assistant｜><think>\n"), "{asked}");
    }

    /// Llama 3.3's own template (tests/templates/README.md): detected as Llama's JSON
    /// format; the tools (in the first user turn, as the template puts them), parallel
    /// calls split into one turn each with its result, and the results render as the model
    /// was trained on.
    #[test]
    fn llama_renders_tools_and_one_call_per_turn() {
        let source = include_str!("../tests/templates/Llama-3.3.jinja");
        let t = ChatTemplate::new(
            source.into(),
            "<|begin_of_text|>".into(),
            "<|eot_id|>".into(),
        )
        .unwrap();
        assert_eq!(t.tool_format(), ToolFormat::Llama3Json);
        assert!(!t.reasons());
        let function = |name: &str, arguments| serde_json::json!({"type": "function", "function": {"name": name, "arguments": arguments}});
        let mut both = msg("assistant", "Checking both.");
        both.tool_calls = vec![
            function("get_weather", serde_json::json!({"city": "Paris"})),
            function("get_weather", serde_json::json!({"city": "Rome"})),
        ];
        let mut messages = vec![
            msg("system", "Be brief."),
            msg("user", "Weather in Paris and Rome?"),
            both,
            msg("tool", "sunny"),
            msg("tool", "rain"),
            msg("user", "Which is warmer?"),
        ];
        crate::prompt::one_call_per_turn(&mut messages);
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        let out = t.render(&messages, &tools, true, false).unwrap();
        for expected in [
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n\
             Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond \
             with a JSON for a function call with its proper arguments that best answers the given prompt.",
            "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n",
            "Weather in Paris and Rome?<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": \
             {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"sunny\"<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": \
             {\"city\": \"Rome\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"rain\"<|eot_id|>",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert!(
            out.ends_with(
                "<|start_header_id|>user<|end_header_id|>\n\nWhich is warmer?<|eot_id|>\
                <|start_header_id|>assistant<|end_header_id|>\n\n"
            ),
            "{out}"
        );
    }

    /// Mistral Small 3.1's own template (tests/templates/README.md): detected as Mistral's
    /// array format; tools before the last user turn, parallel calls in one array with
    /// nine-character ids that their results repeat (the template raises on shorter ones).
    #[test]
    fn mistral_renders_tools_calls_with_ids_and_results() {
        let source = include_str!("../tests/templates/Mistral-Small-3.1.jinja");
        let t = ChatTemplate::new(source.into(), "<s>".into(), "</s>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::Mistral);
        assert!(
            !t.system_anywhere(),
            "the template raises on a later system turn"
        );
        let mut messages = parallel_weather_with_ids();
        crate::prompt::mistral_ids(&mut messages);
        let first = messages[2].tool_calls[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(first.len(), 9);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()), "{first}");
        assert_eq!(messages[3].tool_call_id.as_deref(), Some(first.as_str()));
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        let out = t.render(&messages, &tools, true, false).unwrap();
        let second = messages[2].tool_calls[1]["id"].as_str().unwrap();
        for expected in [
            "<s>[SYSTEM_PROMPT]You are a helpful assistant that can call tools.".to_owned(),
            format!(
                "Be brief.[/SYSTEM_PROMPT][INST]Weather in Paris and Rome?[/INST][TOOL_CALLS] \
                 [{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Paris\"}}, \"id\": \"{first}\"}}, \
                 {{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Rome\"}}, \"id\": \"{second}\"}}]</s>"
            ),
            format!("[TOOL_RESULTS] {{\"content\": sunny, \"call_id\": \"{first}\"}}[/TOOL_RESULTS]"),
            // The tools come just before the last user turn.
            format!(
                "[TOOL_RESULTS] {{\"content\": rain, \"call_id\": \"{second}\"}}[/TOOL_RESULTS]\
                 [AVAILABLE_TOOLS] [{{\"type\": \"function\", \"function\": {{\"name\": \"get_weather\", \
                 \"description\": \"The weather in a city\", \"parameters\": "
            ),
        ] {
            assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
        }
        assert!(
            out.ends_with("[/AVAILABLE_TOOLS][INST]Which is warmer?[/INST]"),
            "{out}"
        );
        // The Claude ids as they are would be refused: `toolu_1` is too short.
        let mut raw = messages.clone();
        raw[3].tool_call_id = Some("toolu_1".into());
        let refused = t.render(&raw, &tools, true, false);
        assert!(refused.is_err(), "{refused:?}");
    }

    /// Qwen3's own template (tests/templates/README.md): the Hermes form with `<think>`
    /// reasoning; the tools, a call turn's earlier thought (as `reasoning_content`, rendered
    /// for the turns after the last user query), the call, its result, and the thinking
    /// switch render as the model was trained on.
    #[test]
    fn qwen3_renders_tools_a_call_turns_thought_and_results() {
        let source = include_str!("../tests/templates/Qwen3.jinja");
        let t = ChatTemplate::new(source.into(), String::new(), "<|im_end|>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::Hermes);
        assert!(t.reasons());
        let mut call = TemplateMessage {
            reasoning_content: Some("I need the weather.".into()),
            thinking: Some("I need the weather.".into()),
            ..msg("assistant", "Checking.")
        };
        call.tool_calls = vec![serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Oslo"}}})];
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        let messages = [
            msg("system", "Be brief."),
            msg("user", "Weather in Oslo?"),
            call,
            msg("tool", "4 degrees"),
        ];
        let out = t.render(&messages, &tools, true, true).unwrap();
        for expected in [
            "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions",
            "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"",
            "<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n<think>\n\
             I need the weather.\n</think>\n\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", \
             \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n",
            "<|im_start|>user\n<tool_response>\n4 degrees\n</tool_response><|im_end|>\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert!(out.ends_with("<|im_start|>assistant\n"), "{out}");
        let without = t.render(&messages, &tools, true, false).unwrap();
        assert!(
            without.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
            "{without}"
        );
    }

    /// Mistral Small 3.2's own template (tests/templates/README.md): detected as the
    /// `[ARGS]` form; parallel calls one after another with nine-character ids after
    /// `[CALL_ID]`, results naming them (a user's text sent with them joins the last, as
    /// the template raises on a user turn right after results), and the tools before the
    /// last user turn.
    #[test]
    fn mistral_3_2_renders_calls_with_args_markers_ids_and_results() {
        let source = include_str!("../tests/templates/Mistral-Small-3.2.jinja");
        let t = ChatTemplate::new(source.into(), "<s>".into(), "</s>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::MistralArgs);
        let mut messages = parallel_weather_with_ids();
        messages.extend([msg("assistant", "Paris."), msg("user", "Thanks.")]);
        crate::prompt::mistral_ids(&mut messages);
        let raw = messages.clone();
        crate::prompt::user_text_joins_results(&mut messages);
        let id = |i: usize| messages[2].tool_calls[i]["id"].as_str().unwrap().to_owned();
        let (first, second) = (id(0), id(1));
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        let out = t.render(&messages, &tools, true, false).unwrap();
        for expected in [
            "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Weather in Paris and Rome?[/INST]".to_owned(),
            format!(
                "[/INST][TOOL_CALLS]get_weather[CALL_ID]{first}[ARGS]{{\"city\": \"Paris\"}}\
                 [TOOL_CALLS]get_weather[CALL_ID]{second}[ARGS]{{\"city\": \"Rome\"}}</s>"
            ),
            format!(
                "</s>[TOOL_RESULTS]{first}[TOOL_CONTENT]sunny[/TOOL_RESULTS]\
                 [TOOL_RESULTS]{second}[TOOL_CONTENT]rain\n\nWhich is warmer?[/TOOL_RESULTS]Paris.</s>"
            ),
        ] {
            assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
        }
        assert!(
            out.ends_with("[/AVAILABLE_TOOLS][INST]Thanks.[/INST]"),
            "{out}"
        );
        let refused = t.render(&raw, &tools, true, false);
        assert!(refused.is_err(), "{refused:?}");
    }

    /// gpt-oss's own template (tests/templates/README.md): detected as harmony, a reasoner;
    /// the tools as a TypeScript namespace in the developer turn, an earlier thought and
    /// call (one per turn, the call turn's text joined to its thought), results as
    /// messages from the function, and the generation prompt as the model was trained on.
    #[test]
    fn harmony_renders_tools_thoughts_calls_and_results_in_its_channels() {
        let source = include_str!("../tests/templates/gpt-oss-120b.jinja");
        let t = ChatTemplate::new(source.into(), String::new(), "<|return|>".into()).unwrap();
        assert_eq!(t.tool_format(), ToolFormat::Harmony);
        assert!(t.reasons(), "gpt-oss reasons in its analysis channel");
        let function = |city: &str| {
            serde_json::json!({"id": city, "type": "function", "function": {
            "name": "get_weather", "arguments": {"city": city}}})
        };
        let mut both = TemplateMessage {
            thinking: Some("Two cities.".into()),
            reasoning_content: Some("Two cities.".into()),
            ..msg("assistant", "Checking both.")
        };
        both.tool_calls = vec![function("Paris"), function("Rome")];
        let mut messages = vec![
            msg("system", "Be brief."),
            msg("user", "Weather in Paris and Rome?"),
            both,
            msg("tool", "sunny"),
            msg("tool", "rain"),
        ];
        crate::prompt::one_call_per_turn(&mut messages);
        crate::prompt::harmony_call_turns(&mut messages);
        let tools = [serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "description": "Where"},
                "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}})];
        let out = t.render(&messages, &tools, true, true).unwrap();
        for expected in [
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n",
            "Reasoning: medium\n\n# Valid channels: analysis, commentary, final. Channel must be \
             included for every message.\nCalls to these tools must go to the commentary channel: \
             'functions'.<|end|>",
            "<|start|>developer<|message|># Instructions\n\nBe brief.\n\n# Tools\n\n## functions\n\n\
             namespace functions {\n\n// The weather in a city\ntype get_weather = (_: {\n// Where\n\
             city: string,\nunit?: \"c\" | \"f\",\n}) => any;\n\n} // namespace functions<|end|>",
            "<|start|>user<|message|>Weather in Paris and Rome?<|end|>\
             <|start|>assistant<|channel|>analysis<|message|>Two cities.\n\nChecking both.<|end|>\
             <|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>\
             {\"city\": \"Paris\"}<|call|>\
             <|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\"sunny\"<|end|>\
             <|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>\
             {\"city\": \"Rome\"}<|call|>\
             <|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\"rain\"<|end|>",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert!(out.ends_with("<|start|>assistant"), "{out}");
        let high = t
            .render_with_effort(&messages, &tools, true, true, Some("high"))
            .unwrap();
        assert!(high.contains("\nReasoning: high\n\n"), "{high}");

        // Once a final answer follows, the call turn's thought is no longer rendered.
        messages.push(msg("assistant", "Paris is warmer."));
        messages.push(msg("user", "Thanks."));
        let out = t.render(&messages, &tools, true, true).unwrap();
        assert!(!out.contains("Two cities."), "{out}");
        assert!(
            out.ends_with(
                "<|start|>assistant<|channel|>final<|message|>Paris is warmer.<|end|>\
                 <|start|>user<|message|>Thanks.<|end|><|start|>assistant"
            ),
            "{out}"
        );
    }

    #[test]
    fn strftime_writes_pythons_codes() {
        let at = time::macros::datetime!(2026-12-01 09:05:07 UTC);
        assert_eq!(strftime("%Y-%m-%d", at), "2026-12-01");
        assert_eq!(
            strftime("%d %b %Y, %A %H:%M:%S %%", at),
            "01 Dec 2026, Tuesday 09:05:07 %"
        );
        assert_eq!(strftime("%B %q", at), "December %q");
    }

    #[test]
    fn gemma_fallback_renders_turns() {
        let t = ChatTemplate::new(GEMMA_TEMPLATE.into(), "<bos>".into(), "<eos>".into()).unwrap();
        let out = t
            .render(
                &[msg("user", "hi"), msg("assistant", "yo"), msg("user", "q")],
                &[],
                true,
                true,
            )
            .unwrap();
        assert_eq!(out, "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n");
    }
}
