//! Tool calls between a family's markers: the Hermes/Qwen format the default model's chat
//! template teaches (`<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`), the XML
//! forms inside the same markers, and DeepSeek's `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}`
//! `<｜tool▁call▁end｜>`. Text outside calls passes through; only a suffix that may start a
//! marker is held back. A call's arguments are handed on while they are decoded.

use missive_backend::reasoning::partial_suffix;
use serde_json::Value;

use super::call_stream::{CallStream, Progress};
use super::harmony;
use super::named_call::{self, NamedCallStream, NamedForm};
use super::xml_call::{self, Dialect, TextParams, XmlCallStream};

pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

/// The markers a family frames its calls with.
#[derive(Debug, PartialEq, Eq)]
pub struct Markers {
    /// Opens one call, and closes it.
    pub open: &'static str,
    pub close: &'static str,
    /// Opens and closes the block that holds all of a reply's calls, where the family has
    /// one (DeepSeek). It is not text the client sees.
    pub block: Option<(&'static str, &'static str)>,
    /// After `open` comes a JSON array of call objects that runs to the end of the reply,
    /// with no closing marker (Mistral); `close` is then unused.
    pub array: bool,
    /// Every marker the family writes, as the control tokens its vocabulary may hold them as.
    pub tokens: &'static [&'static str],
}

impl Markers {
    /// The text after which the reply is making calls: where a grammar takes over, and
    /// what a forced call's prompt ends with.
    pub fn trigger(&self) -> &'static str {
        self.block.map_or(self.open, |(open, _)| open)
    }

    /// Whether the family's calls may come as a bare JSON object at the reply's start
    /// (not where calls sit in a block or an array, or where the marker is followed by
    /// the name and the call ends with its object).
    pub fn bare_json(&self) -> bool {
        self.block.is_none() && !self.array && !self.close.is_empty()
    }
}

/// Hermes, Qwen's XML forms, GLM, and the described format.
pub const HERMES: Markers = Markers {
    open: OPEN,
    close: CLOSE,
    block: None,
    array: false,
    tokens: &[OPEN, CLOSE],
};

/// Llama 3.1–3.3: a call is the reply's JSON object, `{"name": …, "parameters": {…}}`,
/// bare (recognised at the reply's start) or after `<|python_tag|>`, which is where the
/// grammar takes over; `<|eom_id|>` may end it.
pub const LLAMA: Markers = Markers {
    open: "<|python_tag|>",
    close: "<|eom_id|>",
    block: None,
    array: false,
    tokens: &["<|python_tag|>", "<|eom_id|>"],
};

/// Mistral Small 3.1 and Devstral 2505: `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]`,
/// then the end of the reply.
pub const MISTRAL: Markers = Markers {
    open: "[TOOL_CALLS]",
    close: "",
    block: None,
    array: true,
    tokens: &["[TOOL_CALLS]"],
};

/// Mistral Small 3.2 and Devstral 2507: `[TOOL_CALLS]NAME[ARGS]{…}` per call, each ending
/// with its arguments object (`close` is unused).
pub const MISTRAL_ARGS: Markers = Markers {
    open: "[TOOL_CALLS]",
    close: "",
    block: None,
    array: false,
    tokens: &["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
};

/// gpt-oss (harmony): a call's header up to the name, and `<|call|>` after its arguments
/// (see `harmony`, which puts calls in this form whichever order the header came in).
pub const HARMONY: Markers = Markers {
    open: harmony::CALL_TRIGGER,
    close: harmony::CALL,
    block: None,
    array: false,
    tokens: harmony::TOKENS,
};

/// Between the parts of a DeepSeek call.
pub const DEEPSEEK_SEP: &str = named_call::V3_1.sep;
const DEEPSEEK_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DEEPSEEK_CALLS_END: &str = "<｜tool▁calls▁end｜>";
const DEEPSEEK_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const DEEPSEEK_CALL_END: &str = "<｜tool▁call▁end｜>";

/// DeepSeek V3.1 and R1 (whose calls differ inside the markers).
pub const DEEPSEEK: Markers = Markers {
    open: DEEPSEEK_CALL_BEGIN,
    close: DEEPSEEK_CALL_END,
    block: Some((DEEPSEEK_CALLS_BEGIN, DEEPSEEK_CALLS_END)),
    array: false,
    tokens: &[
        DEEPSEEK_CALLS_BEGIN,
        DEEPSEEK_CALL_BEGIN,
        DEEPSEEK_SEP,
        DEEPSEEK_CALL_END,
        DEEPSEEK_CALLS_END,
    ],
};

/// What the parser hands on: visible text, or a tool call. A call whose arguments are
/// streamed comes as `ToolStart`, `ToolInput` pieces, then its `ToolCall`.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    ToolStart { name: String },
    ToolInput(String),
    ToolCall { name: String, input: Value },
}

/// How a call's body is written between the markers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CallBody {
    /// `{"name": …, "arguments": {…}}` (Hermes, and the described format).
    #[default]
    Json,
    /// An XML form: `<function=NAME>` and one `<parameter=KEY>` per argument (Qwen3-Coder),
    /// or `NAME` and `<arg_key>`/`<arg_value>` pairs (GLM).
    Xml(TextParams, &'static Dialect),
    /// Around DeepSeek's separator, in one of its forms.
    Named(&'static NamedForm),
}

#[derive(Debug)]
pub struct ToolCallParser {
    buf: String,
    in_call: bool,
    /// In an array of calls (Mistral), past its `[`.
    in_array: bool,
    /// The array's text read since its last call (its `[`, commas and spaces): given back
    /// as text if what follows is no call.
    array_text: String,
    markers: &'static Markers,
    body: CallBody,
    /// The open call's arguments, streamed as they come.
    call: CallStream,
    xml: XmlCallStream,
    named: NamedCallStream,
    /// Watching the start of the reply for a call in a form the family slips into.
    slip: Option<SlipWatch>,
}

/// Qwen2.5 often answers a tool request with the call as a fenced ```json block (or a bare
/// JSON object) of `{"name", "arguments"}` instead of its `<tool_call>` markers. The start of
/// the reply is held while it can still be such a call naming one of the request's tools.
#[derive(Debug)]
struct SlipWatch {
    names: Vec<String>,
    held: String,
}

/// Longest reply start held back while it might be a slipped call.
const SLIP_HOLD_MAX: usize = 64 * 1024;

enum Slip {
    Undecided,
    Call {
        name: String,
        input: Value,
        rest: String,
    },
    Text,
}

impl SlipWatch {
    fn judge(&self) -> Slip {
        let held = self.held.trim_start();
        if held.is_empty() || "```".starts_with(held) {
            return Slip::Undecided;
        }
        if held.len() > SLIP_HOLD_MAX {
            return Slip::Text;
        }
        let (json, after) = if let Some(fenced) = held.strip_prefix("```") {
            let Some((lang, body)) = fenced.split_once('\n') else {
                let lang = fenced.trim();
                return match lang.is_empty() || "json".starts_with(&lang.to_ascii_lowercase()) {
                    true => Slip::Undecided,
                    false => Slip::Text,
                };
            };
            if !matches!(lang.trim().to_ascii_lowercase().as_str(), "" | "json") {
                return Slip::Text;
            }
            let Some(end) = body.find("```") else {
                return Slip::Undecided;
            };
            (&body[..end], &body[end + 3..])
        } else if held.starts_with('{') {
            let mut values = serde_json::Deserializer::from_str(held).into_iter::<Value>();
            match values.next() {
                Some(Ok(_)) => held.split_at(values.byte_offset()),
                Some(Err(err)) if err.is_eof() => return Slip::Undecided,
                _ => return Slip::Text,
            }
        } else {
            return Slip::Text;
        };
        match parse_call(json) {
            Piece::ToolCall { name, input } if self.names.contains(&name) => Slip::Call {
                name,
                input,
                rest: after.to_owned(),
            },
            _ => Slip::Text,
        }
    }
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self {
            buf: String::new(),
            in_call: false,
            in_array: false,
            array_text: String::new(),
            markers: &HERMES,
            body: CallBody::default(),
            call: CallStream::default(),
            xml: XmlCallStream::default(),
            named: NamedCallStream::default(),
            slip: None,
        }
    }
}

impl ToolCallParser {
    /// A parser for a reply prefilled up to `markers`' trigger and then `partial` (a
    /// forced tool call): inside a call when the trigger opens one, else before the first
    /// call of the block.
    pub fn after_trigger(markers: &'static Markers, partial: &str) -> Self {
        Self {
            buf: partial.to_owned(),
            in_call: markers.block.is_none(),
            markers,
            ..Self::default()
        }
    }

    /// Calls are framed by `markers`.
    pub fn with_markers(mut self, markers: &'static Markers) -> Self {
        self.markers = markers;
        self
    }

    /// A parser that also recognises calls to `names` written as a fenced or bare JSON
    /// object at the start of the reply (see [`SlipWatch`]).
    pub fn watching_slips(names: Vec<String>) -> Self {
        Self {
            slip: Some(SlipWatch {
                names,
                held: String::new(),
            }),
            ..Self::default()
        }
    }

    /// Calls are written in `body`'s form.
    pub fn with_body(mut self, body: CallBody) -> Self {
        self.body = body;
        self
    }

    pub fn is_in_call(&self) -> bool {
        self.in_call
    }

    /// The start of the reply is held back: it may still be a slipped call.
    pub fn is_holding(&self) -> bool {
        self.slip.as_ref().is_some_and(|w| !w.held.is_empty())
    }

    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let Some(watch) = self.slip.as_mut() else {
            return self.push_marked(text);
        };
        watch.held.push_str(text);
        let mut out = Vec::new();
        loop {
            let Some(watch) = self.slip.as_mut() else {
                return out;
            };
            match watch.judge() {
                Slip::Undecided => return out,
                Slip::Call { name, input, rest } => {
                    out.push(Piece::ToolCall { name, input });
                    watch.held = rest;
                }
                Slip::Text => {
                    let held = std::mem::take(&mut watch.held);
                    self.slip = None;
                    out.extend(self.push_marked(&held));
                    return out;
                }
            }
        }
    }

    /// Text in the family's own marked form.
    fn push_marked(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            let Markers { open, close, .. } = *self.markers;
            if self.in_call && self.markers.array {
                match self.push_array(&mut out) {
                    true => return out,
                    false => continue,
                }
            }
            if self.in_call && close.is_empty() {
                match self.push_object_call(&mut out) {
                    true => return out,
                    false => continue,
                }
            }
            if self.in_call {
                let Some(end) = self.buf.find(close) else {
                    // A tail that may begin the closing marker is not the call's yet.
                    let upto = self.buf.len() - partial_suffix(&self.buf, close);
                    out.extend(self.stream_call(upto));
                    return out;
                };
                out.extend(self.stream_call(end));
                out.extend(self.close_stream());
                let body: String = self.buf.drain(..end + close.len()).collect();
                let body = &body[..end];
                out.push(
                    self.end_call(body)
                        .unwrap_or_else(|| Piece::Text(format!("{open}{body}{close}"))),
                );
            } else {
                self.drop_block_markers();
                if let Some(start) = self.buf.find(open) {
                    if start > 0 {
                        out.push(Piece::Text(self.buf[..start].to_owned()));
                    }
                    self.buf.drain(..start + open.len());
                    self.in_call = true;
                    continue;
                }
                let keep = self.held_suffix();
                let cut = self.buf.len() - keep;
                if cut > 0 {
                    out.push(Piece::Text(self.buf.drain(..cut).collect()));
                }
                return out;
            }
        }
    }

    /// At the end of generation: an unterminated call is parsed if its JSON is complete
    /// (models often stop right after the object). An incomplete one is dropped when the
    /// reply was cut short (`truncated`: a call interrupted by `max_tokens` is not text
    /// the model meant to show), else returned as the text it is.
    pub fn finish(&mut self, truncated: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        if let Some(watch) = self.slip.take() {
            out = self.push_marked(&watch.held);
        }
        out.extend(self.finish_marked(truncated));
        out
    }

    fn finish_marked(&mut self, truncated: bool) -> Vec<Piece> {
        if self.in_call && self.markers.array {
            return self.finish_array(truncated);
        }
        let mut out = Vec::new();
        if self.in_call && self.markers.close.is_empty() && !self.push_object_call(&mut out) {
            // Calls may follow the one that ended.
            out.extend(self.push_marked(""));
            out.extend(self.finish_marked(truncated));
            return out;
        }
        if self.in_call {
            out.extend(self.stream_call(self.buf.len()));
            out.extend(self.close_stream());
            let rest = std::mem::take(&mut self.buf);
            match self.end_call(&rest) {
                Some(call) => out.push(call),
                None if truncated => {}
                None => out.push(Piece::Text(format!("{}{rest}", self.markers.open))),
            }
            return out;
        }
        self.drop_block_markers();
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Text(rest)]
        }
    }
}

impl ToolCallParser {
    /// Reads an array of calls as far as the text allows: each complete object is a call.
    /// True when it needs more text; false when the array ended (or was no array), and
    /// what follows is read as text again.
    fn push_array(&mut self, out: &mut Vec<Piece>) -> bool {
        loop {
            let lead = self.buf.len() - self.buf.trim_start().len();
            let Some(next) = self.buf[lead..].chars().next() else {
                return true;
            };
            match (self.in_array, next) {
                (false, '[') | (true, ',') => {
                    if !self.in_array {
                        self.array_text.push_str(self.markers.open);
                    }
                    self.array_text.extend(self.buf.drain(..=lead));
                    self.in_array = true;
                    continue;
                }
                (true, ']') => {
                    self.buf.drain(..=lead);
                    self.leave_array();
                    return false;
                }
                (true, '{') => {}
                _ => {
                    self.not_an_array(out);
                    return false;
                }
            }
            self.array_text.extend(self.buf.drain(..lead));
            let mut values = serde_json::Deserializer::from_str(&self.buf).into_iter::<Value>();
            let end = match values.next() {
                Some(Ok(_)) => values.byte_offset(),
                Some(Err(err)) if err.is_eof() => {
                    out.extend(self.stream_call(self.buf.len()));
                    return true;
                }
                _ => {
                    self.not_an_array(out);
                    return false;
                }
            };
            out.extend(self.stream_call(end));
            let body: String = self.buf.drain(..end).collect();
            let call = self.end_call(&body);
            self.in_call = true;
            self.array_text.clear();
            out.push(call.unwrap_or(Piece::Text(body)));
        }
    }

    /// Reads a call that has no closing marker (Mistral's `[ARGS]` form): it ends with its
    /// arguments object. True when it needs more text; false when the call ended (or was
    /// no call, and is text as it was written).
    fn push_object_call(&mut self, out: &mut Vec<Piece>) -> bool {
        let sep = match &self.body {
            CallBody::Named(form) => form.sep,
            CallBody::Json | CallBody::Xml(..) => "",
        };
        let Some(at) = self.buf.find(sep).filter(|_| !sep.is_empty()) else {
            return true;
        };
        let after = at + sep.len();
        let start = self.buf.len() - self.buf[after..].trim_start().len();
        let mut values =
            serde_json::Deserializer::from_str(&self.buf[start..]).into_iter::<Value>();
        let end = match values.next() {
            Some(Ok(Value::Object(_))) => start + values.byte_offset(),
            None => return true,
            Some(Err(err)) if err.is_eof() => {
                out.extend(self.stream_call(self.buf.len()));
                return true;
            }
            Some(_) => self.buf.len(),
        };
        out.extend(self.stream_call(end));
        let body: String = self.buf.drain(..end).collect();
        let open = self.markers.open;
        out.push(
            self.end_call(&body)
                .unwrap_or_else(|| Piece::Text(format!("{open}{body}"))),
        );
        false
    }

    /// What followed the marker (or the array's last call) is not the array the family
    /// writes: it is text, as it was written.
    fn not_an_array(&mut self, out: &mut Vec<Piece>) {
        let before = match self.in_array {
            true => std::mem::take(&mut self.array_text),
            false => self.markers.open.to_owned(),
        };
        out.push(Piece::Text(format!(
            "{before}{}",
            std::mem::take(&mut self.buf)
        )));
        self.leave_array();
    }

    /// The reply ended inside an array: a call cut short is closed with what was
    /// streamed of it, or dropped when the reply was truncated.
    fn finish_array(&mut self, truncated: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        if !self.push_array(&mut out) {
            out.extend(self.finish_marked(truncated));
            return out;
        }
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.trim();
        let streamed = self.call.is_started();
        self.leave_array();
        if rest.is_empty() {
            return out;
        }
        match (streamed, truncated) {
            (true, _) => out.extend(self.end_call(rest)),
            (false, true) => {}
            (false, false) => out.push(Piece::Text(rest.to_owned())),
        }
        out
    }

    fn leave_array(&mut self) {
        self.in_call = false;
        self.in_array = false;
        self.array_text.clear();
    }

    /// The block around a reply's calls frames them; it is not text.
    fn drop_block_markers(&mut self) {
        if let Some((begin, end)) = self.markers.block {
            if self.buf.contains(begin) || self.buf.contains(end) {
                self.buf = self.buf.replace(begin, "").replace(end, "");
            }
        }
    }

    /// How much of the text's tail may still begin a marker, and is held back.
    fn held_suffix(&self) -> usize {
        let Markers { open, block, .. } = *self.markers;
        let mut keep = partial_suffix(&self.buf, open);
        if let Some((begin, end)) = block {
            keep = keep
                .max(partial_suffix(&self.buf, begin))
                .max(partial_suffix(&self.buf, end));
        }
        keep
    }

    /// Hands on what the open call's first `upto` bytes add to its streamed arguments.
    fn stream_call(&mut self, upto: usize) -> Vec<Piece> {
        let body = &self.buf[..upto];
        let progress = match &self.body {
            CallBody::Json => self.call.advance(body),
            CallBody::Xml(params, dialect) => self.xml.advance(body, params, dialect),
            CallBody::Named(form) => self.named.advance(body, form),
        };
        pieces(progress)
    }

    /// The open call's body is all in: a form that has no end of its own (GLM's) closes
    /// its streamed arguments here.
    fn close_stream(&mut self) -> Vec<Piece> {
        match &self.body {
            CallBody::Xml(_, dialect) if !dialect.has_own_end() => pieces(self.xml.finish()),
            _ => Vec::new(),
        }
    }

    /// The open call's whole `body` is in: the call it makes, if any. A call whose
    /// arguments were streamed is always closed, with what they parse to (`{}` when cut
    /// short), since the client has already seen it begin.
    fn end_call(&mut self, body: &str) -> Option<Piece> {
        self.in_call = false;
        let call = std::mem::take(&mut self.call);
        let xml = std::mem::take(&mut self.xml);
        let named = std::mem::take(&mut self.named);
        let (parsed, streamed) = match &self.body {
            CallBody::Named(form) => (
                named_call::parse(body, form),
                named
                    .is_started()
                    .then(|| (named.name().map(str::to_owned), named.arguments(body))),
            ),
            CallBody::Xml(params, dialect) => (
                xml_call::parse(body, params, dialect),
                xml.is_started()
                    .then(|| (xml.name().map(str::to_owned), xml.arguments())),
            ),
            CallBody::Json => (
                match parse_call(body) {
                    Piece::ToolCall { name, input } => Some((name, input)),
                    _ => None,
                },
                call.is_started()
                    .then(|| (call.name().map(str::to_owned), call.arguments(body))),
            ),
        };
        let (name, input) = parsed.or_else(|| {
            streamed.map(|(name, arguments)| {
                (
                    name.unwrap_or_default(),
                    arguments.unwrap_or_else(|| Value::Object(Default::default())),
                )
            })
        })?;
        Some(Piece::ToolCall { name, input })
    }
}

fn pieces(progress: Vec<Progress>) -> Vec<Piece> {
    progress
        .into_iter()
        .map(|progress| match progress {
            Progress::Start { name } => Piece::ToolStart { name },
            Progress::Input(text) => Piece::ToolInput(text),
        })
        .collect()
}

fn parse_call(body: &str) -> Piece {
    let parsed: Option<(String, Value)> =
        serde_json::from_str::<Value>(body.trim())
            .ok()
            .and_then(|v| {
                let name = v.get("name")?.as_str()?.to_owned();
                let input = match v.get("arguments").or_else(|| v.get("parameters")) {
                    Some(Value::String(s)) => serde_json::from_str(s).ok()?,
                    Some(args @ Value::Object(_)) => args.clone(),
                    None | Some(Value::Null) => Value::Object(Default::default()),
                    Some(_) => return None,
                };
                Some((name, input))
            });
    match parsed {
        Some((name, input)) => Piece::ToolCall { name, input },
        None => Piece::Text(format!("{OPEN}{body}{CLOSE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(parser: &mut ToolCallParser, chunks: &[&str]) -> Vec<Piece> {
        let mut out: Vec<Piece> = chunks.iter().flat_map(|c| parser.push(c)).collect();
        out.extend(parser.finish(false));
        // Adjacent text pieces are one text for comparison; a streamed call's pieces must
        // add up to the call that closes it.
        let mut merged: Vec<Piece> = Vec::new();
        let mut streamed: Option<(String, String)> = None;
        for piece in out {
            match (merged.last_mut(), piece) {
                (_, Piece::ToolStart { name }) => streamed = Some((name, String::new())),
                (_, Piece::ToolInput(json)) => streamed.as_mut().unwrap().1.push_str(&json),
                (_, Piece::ToolCall { name, input }) => {
                    if let Some((started, json)) = streamed.take() {
                        assert_eq!(started, name);
                        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), input);
                    }
                    merged.push(Piece::ToolCall { name, input });
                }
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        assert!(streamed.is_none(), "every streamed call is closed");
        merged
    }

    #[test]
    fn call_split_across_chunks_is_parsed() {
        let mut p = ToolCallParser::default();
        let out = feed(
            &mut p,
            &[
                "I'll check. <to",
                "ol_call>\n{\"name\": \"get_weather\", \"argu",
                "ments\": {\"location\": \"Paris\"}}\n</tool",
                "_call>",
            ],
        );
        assert_eq!(
            out,
            vec![
                Piece::Text("I'll check. ".into()),
                Piece::ToolCall {
                    name: "get_weather".into(),
                    input: json!({"location": "Paris"})
                },
            ]
        );
    }

    #[test]
    fn text_resembling_a_marker_is_released() {
        let mut p = ToolCallParser::default();
        assert_eq!(
            feed(&mut p, &["a <to", "p> b"]),
            vec![Piece::Text("a <top> b".into())]
        );
    }

    #[test]
    fn unterminated_complete_call_is_accepted_and_garbage_is_text() {
        let mut p = ToolCallParser::after_trigger(&HERMES, "\n{\"name\": \"f\", \"arguments\": ");
        assert_eq!(
            feed(&mut p, &["{\"x\": 1}}"]),
            vec![Piece::ToolCall {
                name: "f".into(),
                input: json!({"x": 1})
            }]
        );
        let mut q = ToolCallParser::default();
        assert_eq!(
            feed(&mut q, &["<tool_call>not json</tool_call>"]),
            vec![Piece::Text("<tool_call>not json</tool_call>".into())]
        );
    }

    /// Replies Qwen2.5-Coder 1.5B wrote through Claude Code 2.1.332 (tool `Write` offered).
    #[test]
    fn slipped_calls_in_fences_or_bare_json_are_recognised_for_real_tools() {
        let names = || vec!["Write".to_owned(), "Read".to_owned()];
        let fenced = "```json\n{\n  \"name\": \"Write\",\n  \"arguments\": {\n    \"file_path\": \"/tmp/w/notes.txt\",\n    \"content\": \"PELICAN-7\"\n  }\n}\n```";
        let chunks: Vec<String> = fenced.chars().map(String::from).collect();
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        assert_eq!(
            feed(&mut ToolCallParser::watching_slips(names()), &chunks),
            vec![Piece::ToolCall {
                name: "Write".into(),
                input: json!({"file_path": "/tmp/w/notes.txt", "content": "PELICAN-7"})
            }]
        );
        let bare = r#"{"name": "Read", "arguments": {"file_path": "/tmp/w/notes.txt"}}"#;
        assert_eq!(
            feed(&mut ToolCallParser::watching_slips(names()), &[bare]),
            vec![Piece::ToolCall {
                name: "Read".into(),
                input: json!({"file_path": "/tmp/w/notes.txt"})
            }]
        );
        // A tool the request does not have, other JSON, and prose stay text.
        for text in [
            "```json\n{\"name\": \"Delete\", \"arguments\": {}}\n```",
            "```json\n{\"a\": 1}\n```",
            "```python\nprint(1)\n```",
            "{\"name\": \"Write\", \"arguments\": {}} and more",
            "Sure, here it is.",
        ] {
            let out = feed(&mut ToolCallParser::watching_slips(names()), &[text]);
            let called = out
                .iter()
                .any(|p| matches!(p, Piece::ToolCall { name, .. } if name != "Write"));
            assert!(!called, "{text}: {out:?}");
            if !text.contains("and more") {
                assert_eq!(out, vec![Piece::Text(text.into())], "{text}");
            }
        }
    }

    #[test]
    fn arguments_are_handed_on_before_the_call_closes() {
        let mut p = ToolCallParser::default();
        let mut seen =
            p.push("<tool_call>\n{\"name\": \"Write\", \"arguments\": {\"content\": \"line one\\n");
        seen.extend(p.push("line two"));
        assert_eq!(
            seen,
            vec![
                Piece::ToolStart {
                    name: "Write".into()
                },
                Piece::ToolInput("{\"content\": \"line one\\n".into()),
                Piece::ToolInput("line two".into()),
            ]
        );
        // A tail that may start the closing marker waits; the call closes with its input.
        assert_eq!(p.push("\"}}\n</tool"), vec![Piece::ToolInput("\"}".into())]);
        assert_eq!(
            p.push("_call>"),
            vec![Piece::ToolCall {
                name: "Write".into(),
                input: json!({"content": "line one\nline two"})
            }]
        );
    }

    #[test]
    fn a_streamed_call_cut_short_is_still_closed() {
        let mut p = ToolCallParser::default();
        let mut out = p.push("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"par");
        out.extend(p.finish(true));
        assert_eq!(
            out.last(),
            Some(&Piece::ToolCall {
                name: "f".into(),
                input: json!({})
            })
        );
    }

    /// Qwen3-Coder's form: text before, two calls, split into 3-character chunks.
    #[test]
    fn xml_calls_are_parsed_and_streamed_in_the_qwen3_coder_form() {
        let params = TextParams::new(std::collections::HashMap::from([(
            "read_file".to_owned(),
            std::collections::HashSet::from(["path".to_owned()]),
        )]));
        let reply = "I'll read both.\n<tool_call>\n<function=read_file>\n<parameter=path>\na.txt\n</parameter>\n<parameter=limit>\n10\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=read_file>\n<parameter=path>\nb <c>.txt\n</parameter>\n</function>\n</tool_call>";
        let chars: Vec<char> = reply.chars().collect();
        let chunks: Vec<String> = chars.chunks(3).map(|c| c.iter().collect()).collect();
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let mut p = ToolCallParser::default().with_body(CallBody::Xml(params, &xml_call::QWEN));
        assert_eq!(
            feed(&mut p, &chunks),
            vec![
                Piece::Text("I'll read both.\n".into()),
                Piece::ToolCall {
                    name: "read_file".into(),
                    input: json!({"path": "a.txt", "limit": 10})
                },
                Piece::Text("\n".into()),
                Piece::ToolCall {
                    name: "read_file".into(),
                    input: json!({"path": "b <c>.txt"})
                },
            ]
        );
    }

    fn glm_params() -> TextParams {
        TextParams::new(std::collections::HashMap::from([(
            "get_weather".to_owned(),
            std::collections::HashSet::from(["city".to_owned()]),
        )]))
    }

    fn chunked(reply: &str, size: usize) -> Vec<String> {
        let chars: Vec<char> = reply.chars().collect();
        chars.chunks(size).map(|c| c.iter().collect()).collect()
    }

    /// GLM 4.5/4.6's form (its template's layout, as Ollama's and llama.cpp's tests record
    /// it): text before, two parallel calls, split every way.
    #[test]
    fn glm_calls_are_parsed_and_streamed_however_the_reply_is_split() {
        let reply = "Checking both.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>São <b>Paulo</arg_value>\n</tool_call>";
        for size in [1, 2, 3, 7, 1000] {
            let chunks = chunked(reply, size);
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            let mut p =
                ToolCallParser::default().with_body(CallBody::Xml(glm_params(), &xml_call::GLM));
            assert_eq!(
                feed(&mut p, &chunks),
                vec![
                    Piece::Text("Checking both.\n".into()),
                    Piece::ToolCall {
                        name: "get_weather".into(),
                        input: json!({"city": "Paris", "days": 3})
                    },
                    Piece::Text("\n".into()),
                    Piece::ToolCall {
                        name: "get_weather".into(),
                        input: json!({"city": "São <b>Paulo"})
                    },
                ],
                "chunks of {size}"
            );
        }
    }

    /// GLM 4.7 writes the same parts with no newlines between them; a call without
    /// arguments is its name alone.
    #[test]
    fn glm_47_layout_and_calls_without_arguments_parse() {
        let mut p =
            ToolCallParser::default().with_body(CallBody::Xml(glm_params(), &xml_call::GLM));
        let out = feed(
            &mut p,
            &["<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value></tool_call><tool_call>get_time\n</tool_call> Done."],
        );
        assert_eq!(
            out,
            vec![
                Piece::ToolCall {
                    name: "get_weather".into(),
                    input: json!({"city": "Oslo"})
                },
                Piece::ToolCall {
                    name: "get_time".into(),
                    input: json!({})
                },
                Piece::Text(" Done.".into()),
            ]
        );
    }

    /// A GLM call cut off by `max_tokens` mid-value: the client saw it begin, so it closes
    /// with what was streamed, and the pieces still parse.
    #[test]
    fn a_glm_call_cut_short_still_closes_its_streamed_input() {
        let mut p =
            ToolCallParser::default().with_body(CallBody::Xml(glm_params(), &xml_call::GLM));
        let mut out = p.push("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Ber");
        out.extend(p.finish(true));
        let streamed: String = out
            .iter()
            .filter_map(|piece| match piece {
                Piece::ToolInput(json) => Some(json.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&streamed).unwrap(),
            json!({"city": "Ber"})
        );
        assert!(matches!(out.last(), Some(Piece::ToolCall { name, .. }) if name == "get_weather"));
    }

    fn deepseek() -> ToolCallParser {
        ToolCallParser::default()
            .with_markers(&DEEPSEEK)
            .with_body(CallBody::Named(&named_call::V3_1))
    }

    /// DeepSeek V3.1's form, as its model card and llama.cpp's tests record it: text
    /// before, two parallel calls in one block, text after, split every way. The block's
    /// markers are not text.
    #[test]
    fn deepseek_calls_are_parsed_and_streamed_however_the_reply_is_split() {
        let reply = "Checking both.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"days\": 3}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>Done.";
        for size in [1, 2, 3, 7, 1000] {
            let chunks = chunked(reply, size);
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            assert_eq!(
                feed(&mut deepseek(), &chunks),
                vec![
                    Piece::Text("Checking both.".into()),
                    Piece::ToolCall {
                        name: "get_weather".into(),
                        input: json!({"city": "Paris", "days": 3})
                    },
                    Piece::ToolCall {
                        name: "get_time".into(),
                        input: json!({})
                    },
                    Piece::Text("Done.".into()),
                ],
                "chunks of {size}"
            );
        }
    }

    /// A reasoning reply: the thought goes to thinking, then one call; a forced call's
    /// parser starts after the block's opening, which the prompt already holds.
    #[test]
    fn deepseek_reasoning_then_a_call_and_a_forced_call() {
        use missive_backend::reasoning::{Segment, ThinkSplitter};
        let reply = "The user wants Oslo.</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        let mut think = ThinkSplitter::new(true);
        let mut thought = String::new();
        let mut text = Vec::new();
        for chunk in chunked(reply, 3) {
            for segment in think.push(&chunk) {
                match segment {
                    Segment::Thinking(t) => thought.push_str(&t),
                    Segment::Text(t) => text.push(t),
                }
            }
        }
        assert_eq!(thought, "The user wants Oslo.");
        let text: Vec<&str> = text.iter().map(String::as_str).collect();
        let call = Piece::ToolCall {
            name: "get_weather".into(),
            input: json!({"city": "Oslo"}),
        };
        assert_eq!(feed(&mut deepseek(), &text), vec![call.clone()]);

        let mut forced = ToolCallParser::after_trigger(&DEEPSEEK, "")
            .with_body(CallBody::Named(&named_call::V3_1));
        let rest = "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        assert_eq!(feed(&mut forced, &[rest]), vec![call]);
    }

    /// Mistral Small 3.2's and Devstral 2507's form, as their templates render it and
    /// llama.cpp's tests record it: each call after `[TOOL_CALLS]`, ending with its object,
    /// with or without a `[CALL_ID]`, parallel calls back to back, text before them, split
    /// every way; a marker followed by no call is text as written.
    #[test]
    fn mistral_args_calls_end_with_their_object_however_the_reply_is_split() {
        let parser = || {
            ToolCallParser::default()
                .with_markers(&MISTRAL_ARGS)
                .with_body(CallBody::Named(&named_call::MISTRAL_ARGS))
        };
        let weather = |city: &str| Piece::ToolCall {
            name: "get_weather".into(),
            input: json!({"city": city}),
        };
        let cases = [
            (
                "Checking.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}",
                vec![Piece::Text("Checking.".into()), weather("Oslo")],
            ),
            (
                "[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\"}",
                vec![weather("Paris"), weather("Rome")],
            ),
            (
                "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"{Oslo}\"} then text",
                vec![weather("{Oslo}"), Piece::Text(" then text".into())],
            ),
            (
                "[TOOL_CALLS]get_weather[ARGS]\"Oslo\"",
                vec![Piece::Text("[TOOL_CALLS]get_weather[ARGS]\"Oslo\"".into())],
            ),
        ];
        for (reply, expected) in cases {
            for size in [1, 2, 3, 7, 1000] {
                let chunks = chunked(reply, size);
                let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
                assert_eq!(
                    feed(&mut parser(), &chunks),
                    expected,
                    "{reply} in chunks of {size}"
                );
            }
        }
        // A forced call: the prompt ends with the marker.
        let mut forced = ToolCallParser::after_trigger(&MISTRAL_ARGS, "")
            .with_body(CallBody::Named(&named_call::MISTRAL_ARGS));
        assert_eq!(
            feed(&mut forced, &["get_weather[ARGS]{\"city\"", ": \"Oslo\"}"]),
            vec![weather("Oslo")]
        );
    }

    /// gpt-oss's raw harmony replies (the forms OpenAI's harmony guide and llama.cpp's
    /// tests record), through the whole chain the engine runs: channels rewritten, the
    /// thought split off, calls parsed and streamed, split every way.
    #[test]
    fn harmony_replies_become_a_thought_text_and_calls_however_they_are_split() {
        use super::super::harmony::{HarmonyStream, Start};
        use missive_backend::reasoning::{Segment, ThinkSplitter};
        let run = |start: Start, reply: &str, size: usize| {
            let mut channels = HarmonyStream::new(start);
            let mut think = ThinkSplitter::new(HarmonyStream::starts_inside_thought(start));
            let mut parser = match start {
                Start::Call => ToolCallParser::after_trigger(&HARMONY, ""),
                _ => ToolCallParser::default().with_markers(&HARMONY),
            }
            .with_body(CallBody::Named(&named_call::HARMONY));
            let (mut thought, mut answer) = (String::new(), Vec::new());
            let mut rewritten: Vec<String> = chunked(reply, size)
                .iter()
                .map(|chunk| channels.push(chunk))
                .collect();
            rewritten.push(channels.finish());
            let mut segments: Vec<Segment> =
                rewritten.iter().flat_map(|text| think.push(text)).collect();
            segments.extend(think.finish());
            for segment in segments {
                match segment {
                    Segment::Thinking(t) => thought.push_str(&t),
                    Segment::Text(t) => answer.push(t),
                }
            }
            let answer: Vec<&str> = answer.iter().map(String::as_str).collect();
            (thought, feed(&mut parser, &answer))
        };
        let weather = |city: &str| Piece::ToolCall {
            name: "get_weather".into(),
            input: json!({"city": city}),
        };
        let cases: [(Start, &str, &str, Vec<Piece>); 4] = [
            // Reasoning, then a call.
            (
                Start::Header,
                "<|channel|>analysis<|message|>Need Oslo's weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}<|call|>",
                "Need Oslo's weather.",
                vec![weather("Oslo")],
            ),
            // Text before the call (a preamble), the recipient before the channel, and an
            // answer after it.
            (
                Start::Header,
                "<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Rome\"}<|call|><|start|>assistant<|channel|>final<|message|>Rain.<|return|>",
                "",
                vec![Piece::Text("Let me check.".into()), weather("Rome"), Piece::Text("Rain.".into())],
            ),
            // A thought and a plain answer.
            (
                Start::Analysis,
                "2+3 is 5.<|end|><|start|>assistant<|channel|>final<|message|>5<|return|>",
                "2+3 is 5.",
                vec![Piece::Text("5".into())],
            ),
            // A forced call, after the trigger the prompt ends with.
            (
                Start::Call,
                "get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}<|call|>",
                "",
                vec![weather("Oslo")],
            ),
        ];
        for (start, reply, thought, pieces) in cases {
            for size in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    run(start, reply, size),
                    (thought.to_owned(), pieces.clone()),
                    "{reply} in chunks of {size}"
                );
            }
        }
    }

    /// DeepSeek R1's form (its template's layout): two calls, one per line, each a fenced
    /// JSON object, split every way.
    #[test]
    fn deepseek_r1_fenced_calls_are_parsed_and_streamed_however_the_reply_is_split() {
        let reply = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        for size in [1, 2, 3, 7, 1000] {
            let chunks = chunked(reply, size);
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            let mut parser = ToolCallParser::default()
                .with_markers(&DEEPSEEK)
                .with_body(CallBody::Named(&named_call::R1));
            assert_eq!(
                feed(&mut parser, &chunks),
                vec![
                    Piece::ToolCall {
                        name: "get_weather".into(),
                        input: json!({"city": "Oslo"})
                    },
                    Piece::Text("\n".into()),
                    Piece::ToolCall {
                        name: "get_time".into(),
                        input: json!({})
                    },
                ],
                "chunks of {size}"
            );
        }
    }

    /// Text that only looks like the start of a marker is released whole; a malformed body
    /// stays text.
    #[test]
    fn deepseek_near_markers_and_bad_bodies_are_text() {
        assert_eq!(
            feed(&mut deepseek(), &["a <｜tool", "▁x｜> b"]),
            vec![Piece::Text("a <｜tool▁x｜> b".into())]
        );
        let bad = "<｜tool▁call▁begin｜>get_weather{}<｜tool▁call▁end｜>";
        assert_eq!(feed(&mut deepseek(), &[bad]), vec![Piece::Text(bad.into())]);
    }

    /// Llama 3.1–3.3's form, as Meta's prompt-format docs and llama.cpp's tests record
    /// it: the reply is the call object, bare or after `<|python_tag|>`, split every way.
    /// Prose that merely holds JSON stays text.
    #[test]
    fn llama_calls_are_the_reply_itself_however_it_is_split() {
        let llama =
            || ToolCallParser::watching_slips(vec!["get_weather".to_owned()]).with_markers(&LLAMA);
        let call = Piece::ToolCall {
            name: "get_weather".into(),
            input: json!({"city": "Paris", "days": 3}),
        };
        let bare =
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}";
        let tagged = format!("<|python_tag|>{bare}<|eom_id|>");
        for reply in [bare, tagged.as_str()] {
            for size in [1, 2, 5, 1000] {
                let chunks = chunked(reply, size);
                let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
                assert_eq!(
                    feed(&mut llama(), &chunks),
                    vec![call.clone()],
                    "{reply} in chunks of {size}"
                );
            }
        }
        let prose = "Use {\"name\": \"get_weather\"} to ask.";
        assert_eq!(
            feed(&mut llama(), &[prose]),
            vec![Piece::Text(prose.into())]
        );
        // A forced call: the prompt ends with the tag, the grammar writes the object.
        let mut forced = ToolCallParser::after_trigger(&LLAMA, "");
        assert_eq!(feed(&mut forced, &[bare]), vec![call]);
    }

    fn mistral() -> ToolCallParser {
        ToolCallParser::default().with_markers(&MISTRAL)
    }

    /// Mistral Small 3.1's form, as its template renders calls and llama.cpp's tests record
    /// them: text before, then the array of calls, with or without the space and the ids
    /// the template adds; split every way. Arguments stream as each call is decoded.
    #[test]
    fn mistral_arrays_of_calls_are_parsed_and_streamed_however_the_reply_is_split() {
        let paris = Piece::ToolCall {
            name: "get_weather".into(),
            input: json!({"city": "Paris", "days": 3}),
        };
        let time = Piece::ToolCall {
            name: "get_time".into(),
            input: json!({"zone": "CET"}),
        };
        for (reply, expected) in [
            (
                "Checking both.[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}, {\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}]",
                vec![Piece::Text("Checking both.".into()), paris.clone(), time.clone()],
            ),
            (
                "[TOOL_CALLS][{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"days\":3},\"id\":\"a1b2c3d4e\"}]",
                vec![paris.clone()],
            ),
        ] {
            for size in [1, 2, 3, 7, 1000] {
                let chunks = chunked(reply, size);
                let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
                assert_eq!(feed(&mut mistral(), &chunks), expected, "{reply} in chunks of {size}");
            }
        }
        // The first call's arguments are streamed before the second call is written.
        let mut p = mistral();
        let out =
            p.push("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par");
        assert!(
            out.contains(&Piece::ToolStart {
                name: "get_weather".into()
            }),
            "{out:?}"
        );
        assert!(
            out.iter().any(|p| matches!(p, Piece::ToolInput(_))),
            "{out:?}"
        );
    }

    #[test]
    fn mistral_forced_cut_and_unlike_replies() {
        // A forced call: the prompt ends with the marker, the grammar writes ` [`, the calls
        // and `]`.
        let mut forced = ToolCallParser::after_trigger(&MISTRAL, "");
        assert_eq!(
            feed(&mut forced, &[" [{\"name\": \"f\", \"arguments\": {}}]"]),
            vec![Piece::ToolCall {
                name: "f".into(),
                input: json!({})
            }]
        );
        // Cut by max_tokens inside the second call: the first stands, the second was
        // streamed and is closed, as a cut call of any family is.
        let mut cut = mistral();
        let mut out = cut.push("[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {\"k\": 1, \"j\"");
        out.extend(cut.finish(true));
        let calls: Vec<&Piece> = out
            .iter()
            .filter(|p| matches!(p, Piece::ToolCall { .. }))
            .collect();
        assert_eq!(calls.len(), 2, "{out:?}");
        assert!(
            matches!(calls[1], Piece::ToolCall { name, input } if name == "g" && input.is_object()),
            "{out:?}"
        );
        // The marker followed by no array, and an array of no calls, are text.
        assert_eq!(
            feed(&mut mistral(), &["Use [TOOL_CALLS] wisely."]),
            vec![Piece::Text("Use [TOOL_CALLS] wisely.".into())]
        );
        assert_eq!(
            feed(&mut mistral(), &["[TOOL_CALLS] [1, 2]"]),
            vec![Piece::Text("[TOOL_CALLS] [1, 2]".into())]
        );
    }

    #[test]
    fn two_calls_in_a_row() {
        let mut p = ToolCallParser::default();
        let out = feed(&mut p, &["<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"b\",\"arguments\":\"{\\\"k\\\":2}\"}</tool_call>"]);
        assert_eq!(
            out,
            vec![
                Piece::ToolCall {
                    name: "a".into(),
                    input: json!({})
                },
                Piece::Text("\n".into()),
                Piece::ToolCall {
                    name: "b".into(),
                    input: json!({"k": 2})
                },
            ]
        );
    }
}
