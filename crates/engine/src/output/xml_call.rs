//! Tool calls in the Qwen3-Coder form its chat template teaches, inside the `<tool_call>`
//! markers: `<function=NAME>`, then one `<parameter=KEY>\nVALUE\n</parameter>` per argument,
//! then `</function>`. A value is raw text for a string parameter and JSON otherwise.
//!
//! The arguments are streamed as the JSON object they make: `{"KEY": "` and the escaped
//! text as it comes for a string, the whole value at its close for the others. The pieces
//! concatenated always parse (once closed) to what [`parse`] returns for the same body.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use missive_backend::reasoning::partial_suffix;
use serde_json::{Map, Value};

use super::call_stream::Progress;

const FUNCTION: &str = "<function=";
const FUNCTION_END: &str = "</function>";
const PARAMETER: &str = "<parameter=";
const PARAMETER_END: &str = "</parameter>";
/// What closes a value: its own line ends before the closing tag.
const VALUE_END: &str = "\n</parameter>";

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
pub fn parse(body: &str, params: &TextParams) -> Option<(String, Value)> {
    let start = body.find(FUNCTION)? + FUNCTION.len();
    let name_end = start + body[start..].find('>')?;
    let name = body[start..name_end].trim().to_owned();
    let mut rest = &body[name_end + 1..];
    let mut arguments = Map::new();
    while let Some(at) = rest.find(PARAMETER) {
        let key_start = at + PARAMETER.len();
        let key_end = key_start + rest[key_start..].find('>')?;
        let key = rest[key_start..key_end].trim().to_owned();
        let text_start = key_end + 1;
        let text = &rest[text_start..];
        let text = text.strip_prefix('\n').unwrap_or(text);
        let end = text.find(VALUE_END).or_else(|| text.find(PARAMETER_END))?;
        arguments.insert(
            key.clone(),
            value(&text[..end], params.is_text(&name, &key)),
        );
        rest = &text[end..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
        rest = rest.strip_prefix(PARAMETER_END).unwrap_or(rest);
    }
    if !rest.contains(FUNCTION_END) {
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
    pub fn advance(&mut self, body: &str, params: &TextParams) -> Vec<Progress> {
        let mut out = Vec::new();
        loop {
            if self.closed {
                return out;
            }
            let Some(name) = self.name.clone() else {
                let Some(start) = body.find(FUNCTION).map(|at| at + FUNCTION.len()) else {
                    return out;
                };
                let Some(end) = body[start..].find('>').map(|e| start + e) else {
                    return out;
                };
                self.name = Some(body[start..end].trim().to_owned());
                self.at = end + 1;
                out.push(Progress::Start {
                    name: self.name.clone().unwrap_or_default(),
                });
                self.send("{", &mut out);
                continue;
            };
            match self.open.as_mut() {
                None => {
                    let rest = &body[self.at..];
                    let param = rest.find(PARAMETER);
                    let end = rest.find(FUNCTION_END);
                    match (param, end) {
                        (Some(p), e) if e.is_none_or(|e| p < e) => {
                            let key_start = self.at + p + PARAMETER.len();
                            let Some(key_end) = body[key_start..].find('>').map(|k| key_start + k)
                            else {
                                return out;
                            };
                            let key = body[key_start..key_end].trim().to_owned();
                            let is_text = params.is_text(&name, &key);
                            let separator = if self.params_sent == 0 { "" } else { ", " };
                            let head = format!("{separator}{}: ", Value::String(key));
                            self.send(&head, &mut out);
                            self.params_sent += 1;
                            self.at = key_end + 1;
                            self.open = Some(OpenParam {
                                is_text,
                                value_start: None,
                                sent_upto: 0,
                            });
                        }
                        (_, Some(e)) => {
                            self.at += e + FUNCTION_END.len();
                            self.closed = true;
                            self.send("}", &mut out);
                        }
                        _ => return out,
                    }
                }
                Some(param) => {
                    // The value starts after the newline that follows the tag.
                    let start = match param.value_start {
                        Some(start) => start,
                        None => {
                            let Some(first) = body[self.at..].chars().next() else {
                                return out;
                            };
                            let start = self.at + usize::from(first == '\n');
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
                    match text.find(VALUE_END).or_else(|| text.find(PARAMETER_END)) {
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
                                .find(PARAMETER_END)
                                .map_or(0, |p| p + PARAMETER_END.len());
                            self.at = value_end + skip;
                            self.open = None;
                            self.send(&piece, &mut out);
                        }
                        None if param.is_text => {
                            // Send all but a tail that may begin the closing tag.
                            let hold = partial_suffix(text, VALUE_END)
                                .max(partial_suffix(text, PARAMETER_END));
                            let upto = body.len() - hold;
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
        let (name, input) = parse(BODY, &params()).unwrap();
        assert_eq!(name, "write_file");
        assert_eq!(
            input,
            json!({"path": "src/main.rs", "content": "fn main() {\n    println!(\"hi </param\");\n}", "mode": 420})
        );
        assert_eq!(
            parse("\n<function=write_file>\n<parameter=path>\nx", &params()),
            None
        );
    }

    #[test]
    fn streamed_pieces_add_up_to_the_parsed_call_however_the_body_is_split() {
        let (_, expected) = parse(BODY, &params()).unwrap();
        for step in [1, 2, 3, 7, 1000] {
            let mut stream = XmlCallStream::default();
            let mut sent = String::new();
            let mut name = None;
            let chars: Vec<(usize, char)> = BODY.char_indices().collect();
            for chunk in chars.chunks(step) {
                let (at, c) = chunk[chunk.len() - 1];
                for progress in stream.advance(&BODY[..at + c.len_utf8()], &params()) {
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
            .advance(body, &params())
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
