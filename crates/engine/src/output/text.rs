//! Turns token bytes into text: whole UTF-8 characters only, and never a character
//! that may turn out to belong to a stop sequence.

/// What one token contributed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Text safe to emit now (may be empty).
    pub text: String,
    /// Set when a stop sequence completed; generation ends and the sequence is not emitted.
    pub stop: Option<String>,
}

/// A streaming decoder that holds back only what it must: the tail of an incomplete UTF-8
/// character, and a suffix that is a prefix of some stop sequence.
#[derive(Debug, Default)]
pub struct TextDecoder {
    pending: Vec<u8>,
    held: String,
    stops: Vec<String>,
}

impl TextDecoder {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            pending: Vec::new(),
            held: String::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Step {
        self.pending.extend_from_slice(bytes);
        self.drain_valid_utf8();
        if let Some((at, stop)) = self.earliest_stop() {
            let text = self.held[..at].to_owned();
            self.held.clear();
            return Step {
                text,
                stop: Some(stop),
            };
        }
        let keep = self.held_back_len();
        let cut = self.held.len() - keep;
        let text: String = self.held.drain(..cut).collect();
        Step { text, stop: None }
    }

    /// Everything still held, at the end of generation. An incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            text.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        text
    }

    fn drain_valid_utf8(&mut self) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(valid) => {
                    self.held.push_str(valid);
                    self.pending.clear();
                    return;
                }
                Err(err) => {
                    let valid_up_to = err.valid_up_to();
                    // The prefix was just checked to be valid UTF-8.
                    self.held
                        .push_str(&String::from_utf8_lossy(&self.pending[..valid_up_to]));
                    match err.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid_up_to);
                            return;
                        }
                        // Invalid bytes: replace them and go on.
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid_up_to + bad);
                        }
                    }
                }
            }
        }
    }

    fn earliest_stop(&self) -> Option<(usize, String)> {
        self.stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop.clone())))
            .min_by_key(|(at, _)| *at)
    }

    /// Length of the longest suffix of `held` that starts some stop sequence.
    fn held_back_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stops {
            for (start, _) in self.held.char_indices() {
                let suffix = &self.held[start..];
                if suffix.len() <= longest {
                    break;
                }
                if stop.starts_with(suffix) {
                    longest = suffix.len();
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut d = TextDecoder::new(stops.iter().map(|s| (*s).to_owned()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let step = d.push(p);
            if !step.text.is_empty() {
                out.push(step.text);
            }
            if step.stop.is_some() {
                return (out, step.stop);
            }
        }
        let rest = d.finish();
        if !rest.is_empty() {
            out.push(rest);
        }
        (out, None)
    }

    #[test]
    fn utf8_split_across_tokens_is_emitted_whole() {
        let euro = "€".as_bytes();
        let (out, _) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(out, ["a", "€", "b"]);
    }

    #[test]
    fn stop_sequence_split_across_tokens_is_never_emitted() {
        let (out, stop) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert_eq!(out.concat(), "hello ");
        assert_eq!(stop.as_deref(), Some("END"));
    }

    #[test]
    fn false_start_of_stop_is_released() {
        let (out, stop) = run(&["END"], &[b"hello E", b"x"]);
        assert_eq!(out.concat(), "hello Ex");
        assert_eq!(stop, None);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (out, stop) = run(&["bb", "a"], &[b"xxbb a"]);
        assert_eq!(out.concat(), "xx");
        assert_eq!(stop.as_deref(), Some("bb"));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(out.concat(), "a\u{fffd}b");
    }
}
