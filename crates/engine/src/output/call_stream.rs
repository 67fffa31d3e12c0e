//! Follows a tool call's JSON body (`{"name": …, "arguments": {…}}`) while it is decoded, so
//! the `arguments` object can be streamed as `input_json_delta` pieces before the call ends.
//! Every piece is raw model text inside that object, so the pieces concatenated so far are
//! always a prefix of the JSON the call parses to.

use serde_json::Value;

/// Where the scanner stands in the call object's top level.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Expect {
    /// Before the opening `{`.
    #[default]
    Open,
    Key,
    Colon,
    Value,
    /// After a value: `,` or `}`.
    Next,
    /// The object closed, or the body is not shaped like a call.
    Done,
}

#[derive(Debug, Default)]
pub struct CallStream {
    /// Bytes of the body already scanned.
    scanned: usize,
    expect: Expect,
    /// Nesting below the call object's own level (inside a value).
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Start of the top-level string being read (key or value), with its quote.
    string_start: Option<usize>,
    key: Option<String>,
    name: Option<String>,
    /// The `arguments` object: where it starts, where it ended, and how much was sent.
    args_start: Option<usize>,
    args_end: Option<usize>,
    sent: usize,
    started: bool,
}

/// What the scanner hands on.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// The call's name is known and its arguments object has begun.
    Start { name: String },
    /// More of the arguments object's text.
    Input(String),
}

impl CallStream {
    /// Scans `body` (the call's text so far; it only ever grows) and returns what can be sent.
    pub fn advance(&mut self, body: &str) -> Vec<Progress> {
        for (offset, ch) in body[self.scanned..].char_indices() {
            self.step(self.scanned + offset, ch, body);
        }
        self.scanned = body.len();
        let mut out = Vec::new();
        let (Some(name), Some(start)) = (self.name.as_ref(), self.args_start) else {
            return out;
        };
        if !self.started {
            self.started = true;
            self.sent = start;
            out.push(Progress::Start { name: name.clone() });
        }
        let end = self.args_end.unwrap_or(self.scanned);
        if end > self.sent {
            out.push(Progress::Input(body[self.sent..end].to_owned()));
            self.sent = end;
        }
        out
    }

    /// The arguments have begun streaming: the call must be closed, whatever follows.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The streamed arguments, parsed when the object is complete.
    pub fn arguments(&self, body: &str) -> Option<Value> {
        let (start, end) = (self.args_start?, self.args_end?);
        serde_json::from_str(body.get(start..end)?).ok()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn step(&mut self, at: usize, ch: char, body: &str) {
        if self.in_string {
            match (self.escaped, ch) {
                (true, _) => self.escaped = false,
                (false, '\\') => self.escaped = true,
                (false, '"') => {
                    self.in_string = false;
                    if self.depth == 0 {
                        self.end_top_string(&body[..at + 1]);
                    }
                }
                _ => {}
            }
            return;
        }
        if self.depth > 0 {
            match ch {
                '"' => self.in_string = true,
                '{' | '[' => self.depth += 1,
                '}' | ']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.end_value(at + 1);
                    }
                }
                _ => {}
            }
            return;
        }
        if ch.is_whitespace() {
            return;
        }
        self.expect = match (self.expect, ch) {
            (Expect::Open, '{') => Expect::Key,
            (Expect::Key, '"') | (Expect::Value, '"') => {
                self.in_string = true;
                self.string_start = Some(at);
                self.expect
            }
            (Expect::Key, '}') | (Expect::Next, '}') => Expect::Done,
            (Expect::Colon, ':') => Expect::Value,
            (Expect::Next, ',') => Expect::Key,
            (Expect::Value, '{' | '[') => {
                self.depth = 1;
                if ch == '{' && self.is_arguments_key() && self.args_start.is_none() {
                    self.args_start = Some(at);
                }
                Expect::Value
            }
            // Numbers and literals are not part of a call's shape; they end at `,` or `}`.
            (Expect::Value, ',') => Expect::Key,
            (Expect::Value, '}') => Expect::Done,
            (Expect::Value, _) => Expect::Value,
            _ => Expect::Done,
        };
    }

    fn is_arguments_key(&self) -> bool {
        matches!(self.key.as_deref(), Some("arguments" | "parameters"))
    }

    /// A top-level string closed at the end of `upto`: a key, or a value.
    fn end_top_string(&mut self, upto: &str) {
        let Some(start) = self.string_start.take() else {
            return;
        };
        let text = serde_json::from_str::<String>(&upto[start..]).ok();
        match self.expect {
            Expect::Key => {
                self.key = text;
                self.expect = Expect::Colon;
            }
            Expect::Value => {
                if self.key.as_deref() == Some("name") && self.name.is_none() {
                    self.name = text;
                }
                self.expect = Expect::Next;
            }
            _ => self.expect = Expect::Done,
        }
    }

    /// A nested value (object or array) at the top level closed just before `end`.
    fn end_value(&mut self, end: usize) {
        if self.args_start.is_some() && self.args_end.is_none() && self.is_arguments_key() {
            self.args_end = Some(end);
        }
        self.expect = Expect::Next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Feeds `body` one character at a time; returns the name and the streamed text.
    fn stream(body: &str) -> (Option<String>, String, CallStream) {
        let mut scanner = CallStream::default();
        let (mut name, mut text) = (None, String::new());
        for end in body.char_indices().map(|(i, c)| i + c.len_utf8()) {
            for progress in scanner.advance(&body[..end]) {
                match progress {
                    Progress::Start { name: n } => {
                        assert!(name.is_none(), "one start");
                        name = Some(n);
                    }
                    Progress::Input(piece) => text.push_str(&piece),
                }
            }
        }
        (name, text, scanner)
    }

    #[test]
    fn arguments_stream_as_they_are_written_and_parse_to_the_input() {
        let body = "\n{\"name\": \"Write\", \"arguments\": {\"file_path\": \"a}\\\"b\", \"content\": \"x{[\\n\", \"n\": [1, {\"k\": null}]}}\n";
        let (name, text, scanner) = stream(body);
        assert_eq!(name.as_deref(), Some("Write"));
        let input: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            input,
            json!({"file_path": "a}\"b", "content": "x{[\n", "n": [1, {"k": null}]})
        );
        assert_eq!(scanner.arguments(body), Some(input));
    }

    #[test]
    fn every_prefix_sent_is_a_prefix_of_the_arguments() {
        let body = r#"{"name": "f", "arguments": {"a": "ü€😀", "b": 2}}"#;
        let mut scanner = CallStream::default();
        let mut sent = String::new();
        for end in body.char_indices().map(|(i, c)| i + c.len_utf8()) {
            for progress in scanner.advance(&body[..end]) {
                if let Progress::Input(piece) = progress {
                    sent.push_str(&piece);
                    assert!(r#"{"a": "ü€😀", "b": 2}"#.starts_with(&sent), "{sent}");
                }
            }
        }
        assert_eq!(sent, r#"{"a": "ü€😀", "b": 2}"#);
    }

    #[test]
    fn nothing_streams_with_string_arguments_or_outside_a_call_object() {
        for body in [
            r#"{"name": "f", "arguments": "{\"a\": 1}"}"#,
            r#"not json {"name": "f", "arguments": {}}"#,
        ] {
            let (name, text, scanner) = stream(body);
            assert_eq!((name, text.as_str()), (None, ""), "{body}");
            assert!(!scanner.is_started());
        }
    }

    #[test]
    fn arguments_before_the_name_are_sent_once_the_name_is_known() {
        let body = r#"{"arguments": {"a": 1}, "name": "f"}"#;
        let mut scanner = CallStream::default();
        assert!(scanner.advance(&body[..22]).is_empty());
        assert_eq!(
            scanner.advance(body),
            vec![
                Progress::Start { name: "f".into() },
                Progress::Input(r#"{"a": 1}"#.into())
            ]
        );
    }

    #[test]
    fn an_unfinished_object_has_no_arguments_yet() {
        let body = r#"{"name": "f", "arguments": {"a": [1, 2"#;
        let (name, text, scanner) = stream(body);
        assert_eq!(name.as_deref(), Some("f"));
        assert_eq!(text, r#"{"a": [1, 2"#);
        assert_eq!(scanner.arguments(body), None);
        assert_eq!(scanner.name(), Some("f"));
    }
}
