//! gpt-oss's harmony format, read as the other families' forms. A harmony reply is a run
//! of messages, each a header and a body: `<|channel|>analysis<|message|>…<|end|>`, then
//! `<|start|>assistant<|channel|>final<|message|>…<|return|>`, or a call,
//! `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>` (the
//! recipient may also stand before the channel, as the template renders history).
//!
//! [`HarmonyStream`] rewrites that stream as it is decoded: the first analysis message
//! becomes a `<think>` thought, a call becomes `CALL_TRIGGER NAME<|message|>{…}<|call|>`
//! for the tool-call parser ([`super::named_call::HARMONY`] between [`super::tool_calls::HARMONY`]'s
//! markers), and the final and commentary channels' text is the answer. Headers are not
//! text anyone sees. Output that does not start like a header is passed on as it is, so a
//! model that does not speak harmony still answers.

use missive_backend::reasoning::{partial_suffix, ThinkSplitter};

pub const START: &str = "<|start|>";
pub const CHANNEL: &str = "<|channel|>";
pub const MESSAGE: &str = "<|message|>";
pub const END: &str = "<|end|>";
pub const RETURN: &str = "<|return|>";
pub const CALL: &str = "<|call|>";
pub const CONSTRAIN: &str = "<|constrain|>";

/// Opens a call's header as the model writes it: where a tool call's grammar takes over,
/// and what a forced call's prompt ends with.
pub const CALL_TRIGGER: &str = "<|channel|>commentary to=functions.";
/// Between a call's name and its arguments, in the form the grammar writes.
pub const CALL_HEAD_END: &str = " <|constrain|>json<|message|>";
/// Ends the thinking channel; what a spent thinking budget forces.
pub const THOUGHT_CLOSE: &str = END;
/// After the generation prompt: the answer's channel (a prefill or a structured output
/// goes there), and the thinking channel (opened when thinking is asked for).
pub const FINAL_OPEN: &str = "<|channel|>final<|message|>";
pub const ANALYSIS_OPEN: &str = "<|channel|>analysis<|message|>";

/// Every control token the format writes: shown to the parser, never to the client.
pub const TOKENS: &[&str] = &[START, CHANNEL, MESSAGE, END, RETURN, CALL, CONSTRAIN];

/// What a message's body ends at (a missing `<|end|>` before the next header, too).
const BODY_ENDS: &[&str] = &[END, RETURN, CALL, START, CHANNEL];
/// A header longer than this is no header: its text is the answer.
const HEADER_MAX: usize = 256;

/// Where the prompt left the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After `<|start|>assistant`: a header comes first.
    Header,
    /// After [`CALL_TRIGGER`] (a forced call): the header goes on with the name.
    Call,
    /// In the final channel's body (a prefill, or a structured output).
    Final,
    /// In the analysis channel's body (thinking was asked for).
    Analysis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// The reply's thought: the first analysis message.
    Thought,
    /// A later analysis message: reasoning, not answer, and the thought has closed.
    Unshown,
    Call,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body(Body),
    /// After `<|return|>`: the reply is over.
    Done,
}

#[derive(Debug)]
pub struct HarmonyStream {
    state: State,
    buf: String,
    /// The first analysis message was read: later ones are not the thought.
    thought_seen: bool,
    /// The prompt already holds [`CALL_TRIGGER`] (a forced call), so the parser has it.
    trigger_in_prompt: bool,
}

impl HarmonyStream {
    pub fn new(start: Start) -> Self {
        let (state, buf) = match start {
            Start::Header => (State::Header, String::new()),
            Start::Call => (State::Header, CALL_TRIGGER.to_owned()),
            Start::Final => (State::Body(Body::Text), String::new()),
            Start::Analysis => (State::Body(Body::Thought), String::new()),
        };
        Self {
            state,
            buf,
            thought_seen: start == Start::Analysis,
            trigger_in_prompt: start == Start::Call,
        }
    }

    /// Where [`ThinkSplitter`] starts for a reply that starts at `start`.
    pub fn starts_inside_thought(start: Start) -> bool {
        start == Start::Analysis
    }

    /// Rewrites the next piece of the reply; only a tail that may begin a marker (or an
    /// unfinished header) is held back.
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        let mut out = String::new();
        loop {
            match self.state {
                State::Done => {
                    self.buf.clear();
                    return out;
                }
                State::Header => {
                    if let Some(at) = self.buf.find(MESSAGE) {
                        let header: String = self.buf.drain(..at + MESSAGE.len()).collect();
                        out.push_str(&self.open(&header[..at]));
                        continue;
                    }
                    if is_header_start(&self.buf) && self.buf.len() <= HEADER_MAX {
                        return out;
                    }
                    self.state = State::Body(Body::Text);
                }
                State::Body(body) => {
                    let found = BODY_ENDS
                        .iter()
                        .filter_map(|marker| self.buf.find(marker).map(|at| (at, *marker)))
                        .min_by_key(|(at, _)| *at);
                    let Some((at, marker)) = found else {
                        let keep = BODY_ENDS
                            .iter()
                            .map(|marker| partial_suffix(&self.buf, marker))
                            .max()
                            .unwrap_or(0);
                        let ready: String = self.buf.drain(..self.buf.len() - keep).collect();
                        out.push_str(shown(body, &ready));
                        return out;
                    };
                    let before: String = self.buf.drain(..at).collect();
                    out.push_str(shown(body, &before));
                    // A header that follows without its message's end stays to be read.
                    if marker != START && marker != CHANNEL {
                        self.buf.drain(..marker.len());
                    }
                    out.push_str(match body {
                        Body::Thought => ThinkSplitter::CLOSE,
                        Body::Call => CALL,
                        Body::Unshown | Body::Text => "",
                    });
                    self.state = match marker {
                        RETURN => State::Done,
                        _ => State::Header,
                    };
                }
            }
        }
    }

    /// The rest, at the end of the reply: a body's text; an unfinished header is dropped.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::Body(body) => shown(body, &rest).to_owned(),
            State::Header if !is_header_start(&rest) => rest,
            State::Header | State::Done => String::new(),
        }
    }

    /// Reads a message's header (the text before `<|message|>`) and opens its body.
    fn open(&mut self, header: &str) -> String {
        let recipient = word_after(header, "to=");
        let channel = word_after(header, CHANNEL);
        if let Some(name) = recipient.and_then(|r| r.strip_prefix("functions.")) {
            self.state = State::Body(Body::Call);
            let trigger = match std::mem::take(&mut self.trigger_in_prompt) {
                true => "",
                false => CALL_TRIGGER,
            };
            return format!("{trigger}{name}{MESSAGE}");
        }
        if channel == Some("analysis") {
            let first = !std::mem::replace(&mut self.thought_seen, true);
            self.state = State::Body(if first { Body::Thought } else { Body::Unshown });
            return match first {
                true => ThinkSplitter::OPEN.to_owned(),
                false => String::new(),
            };
        }
        self.state = State::Body(Body::Text);
        String::new()
    }
}

/// What of a body's text goes on.
fn shown(body: Body, text: &str) -> &str {
    match body {
        Body::Unshown => "",
        Body::Thought | Body::Call | Body::Text => text,
    }
}

/// Whether `text` is (or may become) a harmony header: it starts with a control token
/// (`<|start|>`, `<|channel|>`) or with a recipient (`to=`), after any whitespace.
fn is_header_start(text: &str) -> bool {
    let text = text.trim_start();
    ["<|", "to="]
        .iter()
        .any(|lead| text.starts_with(lead) || lead.starts_with(text))
}

/// The word after `key` in a header: up to whitespace or the next control token.
fn word_after<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(key)? + key.len();
    let rest = &header[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `raw` in pieces of `size` characters; returns the rewritten stream.
    fn rewrite(start: Start, raw: &str, size: usize) -> String {
        let mut stream = HarmonyStream::new(start);
        let chars: Vec<char> = raw.chars().collect();
        let mut out = String::new();
        for piece in chars.chunks(size) {
            out.push_str(&stream.push(&piece.iter().collect::<String>()));
        }
        out.push_str(&stream.finish());
        out
    }

    /// Every piece size gives the same rewrite as the whole text at once.
    fn rewrites_to(start: Start, raw: &str, expected: &str) {
        for size in [1, 2, 3, 5, 7, 11, raw.len()] {
            assert_eq!(rewrite(start, raw, size), expected, "pieces of {size}");
        }
    }

    #[test]
    fn a_thought_then_an_answer() {
        rewrites_to(
            Start::Header,
            "<|channel|>analysis<|message|>User asks 2+3. Easy.<|end|><|start|>assistant<|channel|>final<|message|>It is 5.<|return|>",
            "<think>User asks 2+3. Easy.</think>It is 5.",
        );
    }

    #[test]
    fn reasoning_followed_by_a_call_in_the_models_own_order() {
        rewrites_to(
            Start::Header,
            "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}<|call|>",
            "<think>Need weather.</think><|channel|>commentary to=functions.get_weather<|message|>{\"city\": \"Oslo\"}<|call|>",
        );
    }

    #[test]
    fn a_call_with_the_recipient_before_the_channel_as_the_template_renders_it() {
        rewrites_to(
            Start::Header,
            "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>",
            "<|channel|>commentary to=functions.get_time<|message|>{}<|call|>",
        );
    }

    #[test]
    fn text_before_a_call_and_after_it() {
        // A commentary preamble (no recipient) is text the user sees.
        rewrites_to(
            Start::Header,
            "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1}<|call|><|start|>assistant<|channel|>final<|message|>Done.<|end|>",
            "Checking.<|channel|>commentary to=functions.f<|message|>{\"a\": 1}<|call|>Done.",
        );
    }

    #[test]
    fn a_forced_call_goes_on_from_the_trigger_in_the_prompt() {
        rewrites_to(
            Start::Call,
            "book_table <|constrain|>json<|message|>{\"people\": 4}<|call|>",
            "book_table<|message|>{\"people\": 4}<|call|>",
        );
    }

    #[test]
    fn a_thought_opened_by_the_prompt_and_a_later_analysis_message() {
        rewrites_to(
            Start::Analysis,
            "Think.<|end|><|start|>assistant<|channel|>analysis<|message|>More.<|end|><|start|>assistant<|channel|>final<|message|>A.",
            "Think.</think>A.",
        );
    }

    #[test]
    fn the_final_channel_opened_by_the_prompt_and_text_after_return_dropped() {
        rewrites_to(Start::Final, "{\"a\": 1}<|return|>more", "{\"a\": 1}");
    }

    #[test]
    fn output_that_is_no_harmony_passes_as_it_is() {
        rewrites_to(Start::Header, "Hello <b>there</b>", "Hello <b>there</b>");
        // A body without its end marker ends with the reply.
        rewrites_to(
            Start::Header,
            "<|channel|>final<|message|>Hi <|bold|> x",
            "Hi <|bold|> x",
        );
        // An unfinished header is not text.
        rewrites_to(Start::Header, "<|channel|>final", "");
    }

    #[test]
    fn a_partial_marker_is_held_back_then_released() {
        let mut stream = HarmonyStream::new(Start::Final);
        assert_eq!(stream.push("a <|"), "a ");
        assert_eq!(stream.push("en"), "");
        assert_eq!(stream.push("try"), "<|entry");
    }
}
