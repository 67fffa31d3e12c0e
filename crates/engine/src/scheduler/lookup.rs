//! Prompt-lookup drafts: a guess at the next tokens, read from the sequence itself.
//!
//! An agent's reply often copies its input (an edited file, a quoted error, a path). When
//! the last few tokens also occur earlier in the prompt or the reply, the tokens that
//! followed them there are a cheap guess at what follows now. The guess is checked in
//! the same decode as the real next token (see `Slot::sample`): each guessed token is kept
//! only if the sampler picks it anyway, so the output is what plain decoding gives.

use std::sync::atomic::{AtomicU64, Ordering};

use llama_cpp_2::token::LlamaToken;

/// Guessed tokens decoded and those the sampler confirmed, over the engine's life.
#[derive(Debug, Default)]
pub struct DraftStats {
    pub drafted: AtomicU64,
    pub accepted: AtomicU64,
}

impl DraftStats {
    pub(super) fn add(&self, drafted: usize, accepted: usize) {
        self.drafted.fetch_add(drafted as u64, Ordering::Relaxed);
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
    }
}

/// The shortest run of tokens matched: shorter ones match by chance in plain prose, and a
/// wrong guess costs a decode wider than one token.
const NGRAM_MIN: usize = 3;
/// How far back a match is compared, at most. Code repeats short runs everywhere
/// (`self.`, an indent and `if`); the occurrence that agrees longest with the recent
/// tokens is the one being copied.
const MATCH_MAX: usize = 64;

/// Up to `max` tokens that followed the earlier occurrence of the sequence's last tokens
/// that agrees with them longest (at least [`NGRAM_MIN`] tokens; among equals, the most
/// recent), or nothing.
pub(super) fn draft(history: &[LlamaToken], max: usize) -> &[LlamaToken] {
    let len = history.len();
    if max == 0 || len <= NGRAM_MIN {
        return &[];
    }
    let tail = &history[len - NGRAM_MIN..];
    let mut best: Option<(usize, usize)> = None;
    // Occurrences that end before the last token, so at least one token follows.
    for start in (0..len - NGRAM_MIN).rev() {
        if &history[start..start + NGRAM_MIN] != tail {
            continue;
        }
        let agree = NGRAM_MIN
            + (1..=MATCH_MAX.min(start))
                .take_while(|&back| history[start - back] == history[len - NGRAM_MIN - back])
                .count();
        if best.is_none_or(|(_, longest)| agree > longest) {
            best = Some((start + NGRAM_MIN, agree));
        }
        if agree >= MATCH_MAX {
            break;
        }
    }
    best.map_or(&[], |(from, _)| &history[from..(from + max).min(len)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().copied().map(LlamaToken).collect()
    }

    #[test]
    fn a_repeated_run_drafts_what_followed_it() {
        let history = tokens(&[1, 2, 3, 4, 5, 6, 9, 1, 2, 3]);
        assert_eq!(draft(&history, 3), tokens(&[4, 5, 6]).as_slice());
        // Never more than asked, and never past the end.
        assert_eq!(draft(&history, 1), tokens(&[4]).as_slice());
        let short = tokens(&[7, 8, 9, 7, 8, 9]);
        assert_eq!(draft(&short, 10), tokens(&[7, 8, 9]).as_slice());
    }

    #[test]
    fn the_longest_agreement_wins_and_then_the_most_recent() {
        // `2 3 4` occurs twice; only the first occurrence also agrees on the `1` before it.
        let history = tokens(&[1, 2, 3, 4, 10, 0, 2, 3, 4, 20, 0, 1, 2, 3, 4]);
        assert_eq!(draft(&history, 1), tokens(&[10]).as_slice());
        // Agreeing equally, the most recent occurrence.
        let history = tokens(&[2, 3, 4, 10, 0, 2, 3, 4, 20, 0, 2, 3, 4]);
        assert_eq!(draft(&history, 1), tokens(&[20]).as_slice());
    }

    #[test]
    fn short_or_absent_matches_draft_nothing() {
        assert!(draft(&tokens(&[1, 2, 5, 1, 2]), 4).is_empty());
        assert!(draft(&tokens(&[1, 2, 3]), 4).is_empty());
        assert!(draft(&tokens(&[]), 4).is_empty());
        assert!(draft(&tokens(&[1, 2, 3, 1, 2, 3]), 0).is_empty());
    }
}
