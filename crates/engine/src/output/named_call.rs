//! Tool calls written around a separator, between DeepSeek's call markers:
//! - V3.1: the function's name, the separator, then the arguments object
//!   (`NAME<｜tool▁sep｜>{…}`);
//! - R1: the call's type, the separator, the name, then the arguments in a JSON fence
//!   (`function<｜tool▁sep｜>NAME\n```json\n{…}\n````).
//!
//! The arguments are streamed as raw model text, so the pieces concatenated so far are
//! always a prefix of the object the call parses to.

use missive_backend::reasoning::partial_suffix;
use serde_json::Value;

use super::call_stream::Progress;

/// One way of writing a call around the separator.
#[derive(Debug, PartialEq, Eq)]
pub struct NamedForm {
    pub sep: &'static str,
    /// The name follows the separator and the arguments sit in a ```json fence (R1).
    pub fenced: bool,
    /// Marks a call id written between the name and the separator (Mistral Small 3.2's
    /// `[CALL_ID]`): it is not part of the name.
    pub id: Option<&'static str>,
}

/// DeepSeek V3.1.
pub const V3_1: NamedForm = NamedForm {
    sep: "<｜tool▁sep｜>",
    fenced: false,
    id: None,
};

/// DeepSeek R1 (and its distillations).
pub const R1: NamedForm = NamedForm {
    sep: "<｜tool▁sep｜>",
    fenced: true,
    id: None,
};

/// gpt-oss's harmony calls, as [`super::harmony::HarmonyStream`] rewrites them: the name,
/// `<|message|>`, then the arguments object.
pub const HARMONY: NamedForm = NamedForm {
    sep: super::harmony::MESSAGE,
    fenced: false,
    id: None,
};

/// Mistral Small 3.2, Devstral 2507: `[TOOL_CALLS]NAME[ARGS]{…}`, perhaps with
/// `[CALL_ID]ID` before `[ARGS]`; the call ends with its object.
pub const MISTRAL_ARGS: NamedForm = NamedForm {
    sep: "[ARGS]",
    fenced: false,
    id: Some("[CALL_ID]"),
};

/// Opens and closes R1's arguments.
pub const FENCE_OPEN: &str = "\n```json\n";
pub const FENCE_CLOSE: &str = "\n```";

impl NamedForm {
    /// The name and where the arguments start, once both are known.
    fn head<'a>(&self, body: &'a str) -> Option<(&'a str, usize)> {
        let at = body.find(self.sep)?;
        let after = at + self.sep.len();
        if self.fenced {
            let open = body[after..].find(FENCE_OPEN)?;
            let name = body[after..after + open].trim();
            return Some((name, after + open + FENCE_OPEN.len()));
        }
        let head = &body[..at];
        let name = match self.id.and_then(|id| head.find(id)) {
            Some(id) => head[..id].trim(),
            None => head.trim(),
        };
        // The object starts at its brace; whitespace before it is the model's, not JSON's.
        let brace = body[after..].find('{')?;
        if !body[after..after + brace].trim().is_empty() {
            return None;
        }
        Some((name, after + brace))
    }

    /// Where the arguments end in `body`, as far as can be told: before the fence's close
    /// (or a tail that may begin it) in R1's form, at the body's end otherwise.
    fn args_end(&self, body: &str, start: usize) -> usize {
        if !self.fenced {
            return body.len();
        }
        match body[start..].find(FENCE_CLOSE) {
            Some(end) => start + end,
            None => body.len() - partial_suffix(&body[start..], FENCE_CLOSE),
        }
    }
}

/// Follows one call's body while it is decoded.
#[derive(Debug, Default)]
pub struct NamedCallStream {
    /// The name, once the separator is in.
    name: Option<String>,
    /// Where the arguments start in the body, and how much of them was sent.
    args_start: usize,
    sent: usize,
}

impl NamedCallStream {
    /// Scans `body` (the call's text so far; it only ever grows) and returns what can be sent.
    pub fn advance(&mut self, body: &str, form: &NamedForm) -> Vec<Progress> {
        let mut out = Vec::new();
        if self.name.is_none() {
            let Some((name, start)) = form.head(body) else {
                return out;
            };
            self.args_start = start;
            self.sent = start;
            self.name = Some(name.to_owned());
            out.push(Progress::Start {
                name: name.to_owned(),
            });
        }
        let end = form.args_end(body, self.args_start);
        if end > self.sent {
            out.push(Progress::Input(body[self.sent..end].to_owned()));
            self.sent = end;
        }
        out
    }

    /// The arguments have begun streaming: the call must be closed, whatever follows.
    pub fn is_started(&self) -> bool {
        self.name.is_some()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the streamed arguments parse to, when they do.
    pub fn arguments(&self, body: &str) -> Option<Value> {
        let args = body.get(self.args_start..)?;
        first_object(args)
    }
}

/// The call a whole body makes: its name and its arguments object.
pub fn parse(body: &str, form: &NamedForm) -> Option<(String, Value)> {
    let (name, start) = form.head(body)?;
    if name.is_empty() {
        return None;
    }
    let end = match form.fenced {
        true => start + body[start..].find(FENCE_CLOSE)?,
        false => body.len(),
    };
    let input: Value = serde_json::from_str(body[start..end].trim()).ok()?;
    input.is_object().then(|| (name.to_owned(), input))
}

/// The first JSON object at the start of `text`, ignoring what follows it.
fn first_object(text: &str) -> Option<Value> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match values.next() {
        Some(Ok(value @ Value::Object(_))) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_whole_body_parses_to_its_name_and_object() {
        assert_eq!(
            parse("get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}", &V3_1),
            Some(("get_weather".to_owned(), json!({"city": "Paris"})))
        );
        assert_eq!(parse("get_weather<｜tool▁sep｜>[1]", &V3_1), None);
        assert_eq!(parse("<｜tool▁sep｜>{}", &V3_1), None);
        assert_eq!(parse("no separator {}", &V3_1), None);
        assert_eq!(
            parse(
                "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```",
                &R1
            ),
            Some(("get_weather".to_owned(), json!({"city": "Paris"})))
        );
        assert_eq!(
            parse("function<｜tool▁sep｜>get_weather\n```json\n{}", &R1),
            None
        );
    }

    /// R1's fenced form streams the object alone: the fence's close is held back while
    /// it may be coming.
    #[test]
    fn r1_arguments_stream_without_the_fence() {
        let body = "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```";
        let mut stream = NamedCallStream::default();
        let mut streamed = String::new();
        let mut ends: Vec<usize> = body.char_indices().map(|(i, _)| i).skip(1).collect();
        ends.push(body.len());
        for end in ends {
            for piece in stream.advance(&body[..end], &R1) {
                match piece {
                    Progress::Start { name } => assert_eq!(name, "get_weather"),
                    Progress::Input(text) => streamed.push_str(&text),
                }
            }
        }
        assert_eq!(streamed, "{\"city\": \"Oslo\"}");
        assert_eq!(stream.arguments(body), Some(json!({"city": "Oslo"})));
    }

    #[test]
    fn arguments_stream_once_the_separator_and_the_brace_are_in() {
        let body = "get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"days\": 3}";
        let mut stream = NamedCallStream::default();
        let mut pieces = Vec::new();
        // One character at a time, the separator included.
        let mut ends: Vec<usize> = body.char_indices().map(|(i, _)| i).skip(1).collect();
        ends.push(body.len());
        for end in ends {
            pieces.extend(stream.advance(&body[..end], &V3_1));
        }
        let Some(Progress::Start { name }) = pieces.first() else {
            panic!("no start: {pieces:?}");
        };
        assert_eq!(name, "get_weather");
        let streamed: String = pieces[1..]
            .iter()
            .map(|p| match p {
                Progress::Input(text) => text.as_str(),
                Progress::Start { .. } => panic!("started twice"),
            })
            .collect();
        assert_eq!(streamed, "{\"city\": \"Paris\", \"days\": 3}");
        assert_eq!(
            stream.arguments(body),
            Some(json!({"city": "Paris", "days": 3}))
        );
    }
}
