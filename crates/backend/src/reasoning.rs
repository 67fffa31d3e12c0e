//! Splitting a reasoning model's output into its thought and its answer, for models whose
//! template marks thoughts with tags (`<think>…</think>`), and the thinking budget.

/// Marks a thinking signature as Missive's. The server verifies every such block a client
/// sends back, so a backend may render a thought under this prefix into the prompt; a
/// thought signed elsewhere (a session moved here from the Claude API) is never rendered.
pub const SIGNATURE_PREFIX: &str = "msv1.";

/// One piece of split output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Thinking(String),
    Text(String),
}

/// Splits streamed text at the thought's tags. Only a suffix that may begin a tag is
/// held back, so both parts stream as they are produced.
#[derive(Debug)]
pub struct ThinkSplitter {
    open: &'static str,
    close: &'static str,
    inside: bool,
    /// The thought has ended; later tags are plain text.
    closed: bool,
    /// Text has followed the closed thought (newlines between the two are layout).
    answering: bool,
    buf: String,
}

impl ThinkSplitter {
    pub const OPEN: &'static str = "<think>";
    pub const CLOSE: &'static str = "</think>";

    /// `inside`: the prompt already opened the thought (templates that end the generation
    /// prompt with `<think>\n`).
    pub fn new(inside: bool) -> Self {
        Self {
            open: Self::OPEN,
            close: Self::CLOSE,
            inside,
            closed: false,
            answering: false,
            buf: String::new(),
        }
    }

    pub fn is_thinking(&self) -> bool {
        self.inside
    }

    pub fn push(&mut self, text: &str) -> Vec<Segment> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.closed {
                if !self.answering {
                    let rest = self.buf.trim_start_matches('\n').len();
                    self.buf.drain(..self.buf.len() - rest);
                    self.answering = !self.buf.is_empty();
                }
                if !self.buf.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut self.buf)));
                }
                return out;
            }
            let tag = if self.inside { self.close } else { self.open };
            if let Some(at) = self.buf.find(tag) {
                let before: String = self.buf.drain(..at).collect();
                self.buf.drain(..tag.len());
                self.emit(before, &mut out);
                // After the thought closes, the answer's leading newlines are layout.
                self.closed = self.inside;
                self.inside = !self.inside;
                continue;
            }
            let keep = partial_suffix(&self.buf, tag);
            let ready: String = self.buf.drain(..self.buf.len() - keep).collect();
            self.emit(ready, &mut out);
            return out;
        }
    }

    /// Ends the thought early (the budget is spent): what follows is the answer.
    pub fn close_thought(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        if self.inside {
            let rest = std::mem::take(&mut self.buf);
            self.emit(rest, &mut out);
            self.inside = false;
            self.closed = true;
        }
        out
    }

    pub fn finish(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        self.emit(rest, &mut out);
        out
    }

    fn emit(&self, text: String, out: &mut Vec<Segment>) {
        if text.is_empty() {
            return;
        }
        out.push(match self.inside {
            true => Segment::Thinking(text),
            false => Segment::Text(text),
        });
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`: what a
/// streaming parser must hold back because the next chunk may complete the tag.
pub fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(inside: bool, chunks: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::new(inside);
        let mut segments = Vec::new();
        for chunk in chunks {
            segments.extend(splitter.push(chunk));
        }
        segments.extend(splitter.finish());
        let mut thinking = String::new();
        let mut text = String::new();
        for segment in segments {
            match segment {
                Segment::Thinking(t) => thinking.push_str(&t),
                Segment::Text(t) => text.push_str(&t),
            }
        }
        (thinking, text)
    }

    #[test]
    fn tags_split_across_chunks_separate_thought_and_answer() {
        let (thinking, text) = split(
            false,
            &["<th", "ink>Let me", " see.</thi", "nk>\n\nIt is 4."],
        );
        assert_eq!(thinking, "Let me see.");
        assert_eq!(text, "It is 4.");
    }

    #[test]
    fn a_prompt_that_opened_the_thought_starts_inside_it() {
        let (thinking, text) = split(true, &["2+2 is 4", "</think>", "Four."]);
        assert_eq!((thinking.as_str(), text.as_str()), ("2+2 is 4", "Four."));
    }

    #[test]
    fn output_without_tags_is_all_answer_and_late_tags_are_text() {
        assert_eq!(
            split(false, &["Hello <b>"]),
            (String::new(), "Hello <b>".into())
        );
        let (_, text) = split(false, &["<think>a</think>b <think>c"]);
        assert_eq!(text, "b <think>c");
    }

    #[test]
    fn closing_the_thought_early_makes_the_rest_answer() {
        let mut splitter = ThinkSplitter::new(true);
        assert_eq!(splitter.push("hmm"), vec![Segment::Thinking("hmm".into())]);
        assert!(splitter.close_thought().is_empty());
        assert_eq!(splitter.push("Done."), vec![Segment::Text("Done.".into())]);
    }
}
