//! Tool calls in the XML forms chat templates teach inside the `<tool_call>` markers, one
//! [`Dialect`] each:
//! - Qwen3-Coder: `<function=NAME>`, then one `<parameter=KEY>\nVALUE\n</parameter>` per
//!   argument, then `</function>`;
//! - GLM 4.5 and later: `NAME`, then one `<arg_key>KEY</arg_key>\n<arg_value>VALUE</arg_value>`
//!   per argument; the call ends with its closing marker.
//!
//! A value is raw text for a string parameter and JSON otherwise.
//!
//! The arguments are streamed as the JSON object they make: `{"KEY": "` and the escaped
//! text as it comes for a string, the whole value at its close for the others. The pieces
//! concatenated always parse (once closed) to what [`parse`] returns for the same body.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use missive_backend::reasoning::partial_suffix;
use serde_json::{Map, Value};

use super::call_stream::Progress;

/// Where one XML form's parts begin and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The format's name, as `tool_format` spells it.
    pub name: &'static str,
    /// Before the function's name.
    name_open: &'static str,
    /// What may end the name; `>` and a newline are the name's own, a tag is the next part's.
    name_ends: &'static [&'static str],
    /// Before a parameter's key, and after it.
    key_open: &'static str,
    key_close: &'static str,
    /// Before a value, after the key's line.
    value_open: &'static str,
    /// What may end a value, the first preferred.
    value_ends: &'static [&'static str],
    /// The value's own closing tag, skipped after it.
    value_close: &'static str,
    /// What closes the call, when the form has its own (GLM's ends with the marker).
    function_end: Option<&'static str>,
    /// How the template lays a call out, which the grammar holds the model to.
    pub layout: Layout,
}

/// The exact text a template writes around a call's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Before and after the function's name.
    pub name_open: &'static str,
    pub name_close: &'static str,
    /// Before and after a parameter's key (up to where its value starts).
    pub key_open: &'static str,
    pub key_close: &'static str,
    /// After a value.
    pub value_end: &'static str,
    /// After the last parameter.
    pub tail: &'static str,
}

/// Qwen3-Coder and Qwen3.5.
pub const QWEN: Dialect = Dialect {
    name: "qwen_xml",
    name_open: "<function=",
    name_ends: &[">"],
    key_open: "<parameter=",
    key_close: ">",
    value_open: "",
    // A value's own line ends before the closing tag.
    value_ends: &["\n</parameter>", "</parameter>"],
    value_close: "</parameter>",
    function_end: Some("</function>"),
    layout: Layout {
        name_open: "<function=",
        name_close: ">\n",
        key_open: "<parameter=",
        key_close: ">\n",
        value_end: "\n</parameter>\n",
        tail: "</function>",
    },
};

/// GLM 4.5, 4.6 (a newline between parts) and 4.7 (none).
pub const GLM: Dialect = Dialect {
    name: "glm_xml",
    name_open: "",
    name_ends: &["\n", "<arg_key>"],
    key_open: "<arg_key>",
    key_close: "</arg_key>",
    value_open: "<arg_value>",
    value_ends: &["</arg_value>"],
    value_close: "</arg_value>",
    function_end: None,
    // As GLM 4.5 and 4.6 write it; 4.7's parser reads this too.
    layout: Layout {
        name_open: "",
        name_close: "",
        key_open: "\n<arg_key>",
        key_close: "</arg_key>\n<arg_value>",
        value_end: "</arg_value>",
        tail: "",
    },
};

impl Dialect {
    /// Whether a call closes itself, before its marker does.
    pub fn has_own_end(&self) -> bool {
        self.function_end.is_some()
    }

    /// Where the function's name starts in `body`, once it can be known.
    fn name_start(&self, body: &str) -> Option<usize> {
        match self.name_open {
            "" => Some(body.len() - body.trim_start().len()),
            open => body.find(open).map(|at| at + open.len()),
        }
    }

    /// The end of the name that starts at `start`, and where what follows it starts.
    fn name_end(&self, body: &str, start: usize) -> Option<(usize, usize)> {
        self.name_ends
            .iter()
            .filter_map(|end| {
                let at = start + body[start..].find(end)?;
                let next = match end.starts_with('<') {
                    true => at,
                    false => at + end.len(),
                };
                Some((at, next))
            })
            .min()
    }

    /// The first end of a value in `text`, if it is there.
    fn value_end(&self, text: &str) -> Option<usize> {
        self.value_ends.iter().find_map(|end| text.find(end))
    }

    /// How much of `text`'s tail may begin a value's end.
    fn value_end_hold(&self, text: &str) -> usize {
        self.value_ends
            .iter()
            .map(|end| partial_suffix(text, end))
            .max()
            .unwrap_or(0)
    }

    /// The start of a value in `text` (what follows its key), once it can be known.
    fn value_start(&self, text: &str) -> Option<usize> {
        let after_line = usize::from(text.starts_with('\n'));
        let rest = &text[after_line..];
        match self.value_open {
            "" => (!text.is_empty()).then_some(after_line),
            open => rest.strip_prefix(open).map(|_| after_line + open.len()),
        }
    }
}

/// For each tool, the parameters whose values are raw text (schema type `string`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextParams(Arc<HashMap<String, HashSet<String>>>);

impl TextParams {
    pub fn new(tools: HashMap<String, HashSet<String>>) -> Self {
        Self(Arc::new(tools))
    }

    fn is_text(&self, tool: &str, param: &str) -> bool {
        self.0
            .get(tool)
            .is_some_and(|params| params.contains(param))
    }
}

/// A value as the call means it: raw text for a string parameter, else its JSON (text
/// that is not JSON stays text, as the model wrote it).
fn value(text: &str, is_text: bool) -> Value {
    match is_text {
        true => Value::String(text.to_owned()),
        false => {
            serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
    }
}

/// A whole call body: its name and arguments, when it is shaped like a call.
pub fn parse(body: &str, params: &TextParams, dialect: &Dialect) -> Option<(String, Value)> {
    let start = dialect.name_start(body)?;
    let (name_end, next) = match dialect.name_end(body, start) {
        Some(found) => found,
        // A call with no arguments may end with its name, when the marker closes it.
        None if dialect.function_end.is_none() => (body.len(), body.len()),
        None => return None,
    };
    let name = body[start..name_end].trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let mut rest = &body[next..];
    let mut arguments = Map::new();
    while let Some(at) = rest.find(dialect.key_open) {
        let key_start = at + dialect.key_open.len();
        let key_end = key_start + rest[key_start..].find(dialect.key_close)?;
        let key = rest[key_start..key_end].trim().to_owned();
        let text = &rest[key_end + dialect.key_close.len()..];
        let text = &text[dialect.value_start(text)?..];
        let end = dialect.value_end(text)?;
        arguments.insert(
            key.clone(),
            value(&text[..end], params.is_text(&name, &key)),
        );
        rest = &text[end..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
        rest = rest.strip_prefix(dialect.value_close).unwrap_or(rest);
    }
    if dialect.function_end.is_some_and(|end| !rest.contains(end)) {
        return None;
    }
    Some((name, Value::Object(arguments)))
}

/// Follows a call body while it is decoded (see the module docs).
#[derive(Debug, Default)]
pub struct XmlCallStream {
    name: Option<String>,
    /// Where scanning resumes in the body.
    at: usize,
    /// The open parameter: whether it is text, where its value starts, and how much of a
    /// text value was sent.
    open: Option<OpenParam>,
    params_sent: usize,
    closed: bool,
    /// The arguments so far, as sent.
    sent: String,
}

#[derive(Debug)]
struct OpenParam {
    is_text: bool,
    value_start: Option<usize>,
    sent_upto: usize,
}

impl XmlCallStream {
    pub fn advance(&mut self, body: &str, params: &TextParams, dialect: &Dialect) -> Vec<Progress> {
        let mut out = Vec::new();
        loop {
            if self.closed {
                return out;
            }
            let Some(name) = self.name.clone() else {
                let Some(start) = dialect.name_start(body) else {
                    return out;
                };
                let Some((end, next)) = dialect.name_end(body, start) else {
                    return out;
                };
                let name = body[start..end].trim();
                if name.is_empty() {
                    return out;
                }
                self.name = Some(name.to_owned());
                self.at = next;
                out.push(Progress::Start {
                    name: name.to_owned(),
                });
                self.send("{", &mut out);
                continue;
            };
            match self.open.as_mut() {
                None => {
                    let rest = &body[self.at..];
                    let param = rest.find(dialect.key_open);
                    let end = dialect.function_end.and_then(|e| rest.find(e));
                    match (param, end) {
                        (Some(p), e) if e.is_none_or(|e| p < e) => {
                            let key_start = self.at + p + dialect.key_open.len();
                            let Some(key_end) = body[key_start..]
                                .find(dialect.key_close)
                                .map(|k| key_start + k)
                            else {
                                return out;
                            };
                            let key = body[key_start..key_end].trim().to_owned();
                            let is_text = params.is_text(&name, &key);
                            let separator = if self.params_sent == 0 { "" } else { ", " };
                            let head = format!("{separator}{}: ", Value::String(key));
                            self.send(&head, &mut out);
                            self.params_sent += 1;
                            self.at = key_end + dialect.key_close.len();
                            self.open = Some(OpenParam {
                                is_text,
                                value_start: None,
                                sent_upto: 0,
                            });
                        }
                        (_, Some(e)) => {
                            self.at += e + dialect.function_end.map_or(0, str::len);
                            self.close(&mut out);
                        }
                        _ => return out,
                    }
                }
                Some(param) => {
                    let start = match param.value_start {
                        Some(start) => start,
                        None => {
                            let Some(offset) = dialect.value_start(&body[self.at..]) else {
                                return out;
                            };
                            let start = self.at + offset;
                            param.value_start = Some(start);
                            param.sent_upto = start;
                            if param.is_text {
                                self.sent.push('"');
                                out.push(Progress::Input("\"".to_owned()));
                            }
                            start
                        }
                    };
                    let Some(param) = self.open.as_mut() else {
                        return out;
                    };
                    let text = &body[start..];
                    match dialect.value_end(text) {
                        Some(end) => {
                            let value_end = start + end;
                            let piece = match param.is_text {
                                true => {
                                    let rest = escaped(&body[param.sent_upto..value_end]);
                                    rest + "\""
                                }
                                false => value(&body[start..value_end], false).to_string(),
                            };
                            let after = &body[value_end..];
                            let skip = after
                                .find(dialect.value_close)
                                .map_or(0, |p| p + dialect.value_close.len());
                            self.at = value_end + skip;
                            self.open = None;
                            self.send(&piece, &mut out);
                        }
                        None if param.is_text => {
                            // Send all but a tail that may begin the closing tag.
                            let upto = body.len() - dialect.value_end_hold(text);
                            if upto > param.sent_upto {
                                let piece = escaped(&body[param.sent_upto..upto]);
                                param.sent_upto = upto;
                                self.send(&piece, &mut out);
                            }
                            return out;
                        }
                        None => return out,
                    }
                }
            }
        }
    }

    /// The call's marker closed it (a form without its own end): the streamed arguments
    /// are closed too, so that they parse. A value left open is closed as it stands.
    pub fn finish(&mut self) -> Vec<Progress> {
        let mut out = Vec::new();
        if self.name.is_none() || self.closed {
            return out;
        }
        if let Some(param) = self.open.take() {
            match (param.is_text, param.value_start) {
                (true, Some(_)) => self.send("\"", &mut out),
                _ => self.send("null", &mut out),
            }
        }
        self.close(&mut out);
        out
    }

    fn close(&mut self, out: &mut Vec<Progress>) {
        self.closed = true;
        self.send("}", out);
    }

    fn send(&mut self, piece: &str, out: &mut Vec<Progress>) {
        if piece.is_empty() {
            return;
        }
        self.sent.push_str(piece);
        out.push(Progress::Input(piece.to_owned()));
    }

    pub fn is_started(&self) -> bool {
        self.name.is_some()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The streamed arguments, parsed, once the function is closed.
    pub fn arguments(&self) -> Option<Value> {
        self.closed
            .then(|| serde_json::from_str(&self.sent).ok())
            .flatten()
    }
}

/// Text as it goes inside a JSON string, without the quotes.
fn escaped(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> TextParams {
        TextParams::new(HashMap::from([(
            "write_file".to_owned(),
            HashSet::from(["path".to_owned(), "content".to_owned()]),
        )]))
    }

    /// A reply Qwen3-Coder writes for a file edit (its template's own example layout).
    const BODY: &str = "\n<function=write_file>\n<parameter=path>\nsrc/main.rs\n</parameter>\n<parameter=content>\nfn main() {\n    println!(\"hi </param\");\n}\n</parameter>\n<parameter=mode>\n420\n</parameter>\n</function>\n";

    #[test]
    fn a_whole_call_parses_with_text_and_json_values() {
        let (name, input) = parse(BODY, &params(), &QWEN).unwrap();
        assert_eq!(name, "write_file");
        assert_eq!(
            input,
            json!({"path": "src/main.rs", "content": "fn main() {\n    println!(\"hi </param\");\n}", "mode": 420})
        );
        assert_eq!(
            parse(
                "\n<function=write_file>\n<parameter=path>\nx",
                &params(),
                &QWEN
            ),
            None
        );
    }

    #[test]
    fn streamed_pieces_add_up_to_the_parsed_call_however_the_body_is_split() {
        let (_, expected) = parse(BODY, &params(), &QWEN).unwrap();
        for step in [1, 2, 3, 7, 1000] {
            let mut stream = XmlCallStream::default();
            let mut sent = String::new();
            let mut name = None;
            let chars: Vec<(usize, char)> = BODY.char_indices().collect();
            for chunk in chars.chunks(step) {
                let (at, c) = chunk[chunk.len() - 1];
                for progress in stream.advance(&BODY[..at + c.len_utf8()], &params(), &QWEN) {
                    match progress {
                        Progress::Start { name: n } => name = Some(n),
                        Progress::Input(piece) => sent.push_str(&piece),
                    }
                }
            }
            assert_eq!(name.as_deref(), Some("write_file"));
            assert_eq!(
                serde_json::from_str::<Value>(&sent).unwrap(),
                expected,
                "step {step}: {sent}"
            );
            assert_eq!(stream.arguments(), Some(expected.clone()));
        }
    }

    #[test]
    fn text_is_streamed_before_its_parameter_closes() {
        let mut stream = XmlCallStream::default();
        let body = "\n<function=write_file>\n<parameter=content>\nline one\nline two\n</par";
        let sent: String = stream
            .advance(body, &params(), &QWEN)
            .into_iter()
            .filter_map(|p| match p {
                Progress::Input(piece) => Some(piece),
                Progress::Start { .. } => None,
            })
            .collect();
        assert_eq!(sent, "{\"content\": \"line one\\nline two");
        assert!(!stream.closed);
    }
}
