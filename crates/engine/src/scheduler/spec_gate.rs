//! Whether guessing tokens pays on this machine, measured as it runs.
//!
//! A guess is checked in a wider decode, which costs more than a one-token step; whether
//! the tokens it saves make up for that depends on the hardware, the attention kernel, the
//! draft's size against the model's and how often guesses are kept. The gate times steps
//! with and without guesses (per emitted token) and pauses guessing while it loses, probing
//! again now and then, so speculation never makes decoding slower for long.

/// Weight of the newest plain step in their running average.
const ALPHA: f64 = 0.2;
/// Steps with guesses whose totals are compared with plain steps, at a time: one step
/// that keeps little among many that keep much is no reason to stop.
const WINDOW: u32 = 16;
/// Steps guessing stays paused once it has lost.
const PAUSE_STEPS: u64 = 256;
/// Every this many steps one is decoded plainly, to keep the comparison current.
const BASELINE_EVERY: u64 = 64;

#[derive(Debug, Default)]
pub(super) struct SpecGate {
    /// Seconds per emitted token in plain steps, averaged.
    plain: Option<f64>,
    /// Totals over the current window of steps with guesses.
    seconds: f64,
    tokens: usize,
    steps: u32,
    paused_until: u64,
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
        if self.plain.is_some_and(|plain| guessing > plain) {
            tracing::debug!(
                guessing,
                plain = self.plain,
                "guessing costs more than it saves; paused"
            );
            self.paused_until = tick + PAUSE_STEPS;
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
