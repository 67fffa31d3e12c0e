//! Tool calls written as the function's name, a separator, then the arguments as one JSON
//! object: DeepSeek V3.1's `NAME<｜tool▁sep｜>{…}` between its call markers.
//!
//! The arguments are streamed as raw model text after the separator, so the pieces
//! concatenated so far are always a prefix of the object the call parses to.

use serde_json::Value;

use super::call_stream::Progress;

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
    pub fn advance(&mut self, body: &str, sep: &str) -> Vec<Progress> {
        let mut out = Vec::new();
        if self.name.is_none() {
            let Some(at) = body.find(sep) else {
                return out;
            };
            let name = body[..at].trim().to_owned();
            // The object starts at its brace; whitespace before it is the model's, not JSON's.
            let rest = &body[at + sep.len()..];
            let Some(brace) = rest.find('{') else {
                return out;
            };
            if !rest[..brace].trim().is_empty() {
                return out;
            }
            self.args_start = at + sep.len() + brace;
            self.sent = self.args_start;
            self.name = Some(name.clone());
            out.push(Progress::Start { name });
        }
        if body.len() > self.sent {
            out.push(Progress::Input(body[self.sent..].to_owned()));
            self.sent = body.len();
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
pub fn parse(body: &str, sep: &str) -> Option<(String, Value)> {
    let (name, args) = body.split_once(sep)?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let args = args.trim();
    let input: Value = serde_json::from_str(args).ok()?;
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

    const SEP: &str = "<｜tool▁sep｜>";

    #[test]
    fn a_whole_body_parses_to_its_name_and_object() {
        assert_eq!(
            parse("get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}", SEP),
            Some(("get_weather".to_owned(), json!({"city": "Paris"})))
        );
        assert_eq!(parse("get_weather<｜tool▁sep｜>[1]", SEP), None);
        assert_eq!(parse("<｜tool▁sep｜>{}", SEP), None);
        assert_eq!(parse("no separator {}", SEP), None);
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
            pieces.extend(stream.advance(&body[..end], SEP));
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
