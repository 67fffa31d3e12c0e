//! Whether guessing tokens pays on this machine, measured as it runs.
//!
//! A guess is checked in a wider decode, which costs more than a one-token step; whether
//! the tokens it saves make up for that depends on the hardware, the attention kernel, the
//! draft's size against the model's and how often guesses are kept. The gate times steps
//! with and without guesses (per emitted token) and pauses guessing while it loses, probing
//! again now and then, so speculation never makes decoding slower for long.
//!
//! Short guesses are judged apart from long ones. On a CPU a decode of two or three tokens
//! can cost as much as that many one-token decodes, while a decode of ten costs far less
//! per token (measured here: 2 tokens 2.0x one, 3 tokens 3.1x, 7 tokens 5.1x, 33 tokens
//! 13x), so short guesses can lose where long ones win. A grammar's forced text comes in
//! both: a separator, or a call's whole framing.

/// Weight of the newest plain step in their running average.
const ALPHA: f64 = 0.2;
/// Steps with guesses whose totals are compared with plain steps, at a time: one step
/// that keeps little among many that keep much is no reason to stop.
const WINDOW: u32 = 16;
/// Steps guessing stays paused once it has lost; doubled each time it loses again, up to
/// [`MAX_PAUSE_STEPS`], since each probe costs a window of losing steps.
const PAUSE_STEPS: u64 = 256;
const MAX_PAUSE_STEPS: u64 = 4096;
/// Every this many steps one is decoded plainly, to keep the comparison current.
const BASELINE_EVERY: u64 = 64;

/// Guesses shorter than this are judged as short.
pub(super) const SHORT: usize = 4;

/// One gate for short guesses and one for long.
#[derive(Debug, Default)]
pub(super) struct SpecGates {
    short: SpecGate,
    long: SpecGate,
}

impl SpecGates {
    /// The fewest and most tokens a sequence may guess at step `tick` (none when the most
    /// is 0).
    pub fn lengths(&self, tick: u64) -> (usize, usize) {
        match (self.short.allows(tick), self.long.allows(tick)) {
            (true, true) => (1, usize::MAX),
            (true, false) => (1, SHORT - 1),
            (false, true) => (SHORT, usize::MAX),
            (false, false) => (0, 0),
        }
    }

    /// Records a step that only decoded: how long it took, the tokens it emitted, and the
    /// tokens it guessed.
    pub fn record(&mut self, tick: u64, seconds: f64, emitted: usize, guessed: usize) {
        match guessed {
            0 => {
                self.short.record(tick, seconds, emitted, false);
                self.long.record(tick, seconds, emitted, false);
            }
            n if n < SHORT => self.short.record(tick, seconds, emitted, true),
            _ => self.long.record(tick, seconds, emitted, true),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct SpecGate {
    /// Seconds per emitted token in plain steps, averaged.
    plain: Option<f64>,
    /// Totals over the current window of steps with guesses.
    seconds: f64,
    tokens: usize,
    steps: u32,
    paused_until: u64,
    /// How long the next pause lasts (0 until the first).
    pause: u64,
}

impl SpecGate {
    /// Whether step `tick` may carry guesses: not before a plain step has been timed.
    pub fn allows(&self, tick: u64) -> bool {
        self.plain.is_some() && tick >= self.paused_until && !tick.is_multiple_of(BASELINE_EVERY)
    }

    /// Records a step that only decoded (no prompt in it): how long it took, the tokens it
    /// emitted, and whether it carried guesses.
    pub fn record(&mut self, tick: u64, seconds: f64, emitted: usize, guessed: bool) {
        if emitted == 0 {
            return;
        }
        if !guessed {
            let per_token = seconds / emitted as f64;
            self.plain = Some(
                self.plain
                    .map_or(per_token, |old| old + ALPHA * (per_token - old)),
            );
            return;
        }
        self.seconds += seconds;
        self.tokens += emitted;
        self.steps += 1;
        if self.steps < WINDOW {
            return;
        }
        let guessing = self.seconds / self.tokens as f64;
        match self.plain.is_some_and(|plain| guessing > plain) {
            true => {
                self.pause = match self.pause {
                    0 => PAUSE_STEPS,
                    pause => (pause * 2).min(MAX_PAUSE_STEPS),
                };
                tracing::debug!(
                    guessing,
                    plain = self.plain,
                    steps = self.pause,
                    "guessing costs more than it saves; paused"
                );
                self.paused_until = tick + self.pause;
            }
            false => self.pause = 0,
        }
        (self.seconds, self.tokens, self.steps) = (0.0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessing_that_loses_is_paused_and_probed_again_later() {
        let mut gate = SpecGate::default();
        gate.record(1, 0.030, 1, false);
        // Guesses that emit 4 tokens in 80 ms (20 ms a token) win, and one poor step
        // among them changes nothing: never paused.
        gate.record(2, 0.150, 1, true);
        for tick in 3..40 {
            gate.record(tick, 0.080, 4, true);
        }
        assert!(gate.allows(41));
        // Guesses that emit 2 tokens in 100 ms (50 ms a token) lose.
        let mut tick = 41;
        while gate.allows(tick) || tick.is_multiple_of(BASELINE_EVERY) {
            gate.record(tick, 0.100, 2, true);
            tick += 1;
            assert!(tick < 80, "never paused");
        }
        assert!(!gate.allows(tick + 1));
        assert!(gate.allows(tick + PAUSE_STEPS + 1));
        // Losing again on the next probe: paused twice as long.
        let mut tick = tick + PAUSE_STEPS + 1;
        while gate.allows(tick) || tick.is_multiple_of(BASELINE_EVERY) {
            gate.record(tick, 0.100, 2, true);
            tick += 1;
        }
        assert!(!gate.allows(tick + PAUSE_STEPS + 1));
        assert!(gate.allows(tick + 2 * PAUSE_STEPS + 1));
    }

    #[test]
    fn short_guesses_that_lose_are_paused_while_long_ones_that_win_go_on() {
        let mut gates = SpecGates::default();
        assert_eq!(gates.lengths(1), (0, 0));
        gates.record(1, 0.030, 1, 0);
        assert_eq!(gates.lengths(2), (1, usize::MAX));
        // Two tokens cost two plain steps and keep one guess: 31 ms a token, a loss.
        // Eight tokens cost 160 ms and keep six: 23 ms a token, a win.
        let mut tick = 2;
        while gates.lengths(tick).0 == 1 {
            gates.record(tick, 0.062, 2, 1);
            gates.record(tick + 1, 0.160, 7, 7);
            tick += 2;
            assert!(tick < 200, "short guesses never paused");
        }
        assert_eq!(gates.lengths(tick), (SHORT, usize::MAX));
    }

    #[test]
    fn guessing_starts_after_a_plain_step_and_some_stay_plain() {
        let mut gate = SpecGate::default();
        assert!(!gate.allows(1));
        gate.record(1, 0.030, 1, false);
        assert!(!gate.allows(BASELINE_EVERY * 3));
        assert!(gate.allows(BASELINE_EVERY * 3 + 1));
    }
}
