//! Where a byte offset of the rendered prompt falls among its tokens, without tokenising
//! the prefix again (a 20k-token prompt takes ~65 ms to tokenise here, and a request with
//! breakpoints needs a count at each of them).

use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;

/// The byte length of every token's text as the tokeniser reads it from a prompt, special
/// tokens as their literal markers (prompts are tokenised with special-token parsing).
pub(crate) struct PieceLengths(Vec<u32>);

impl PieceLengths {
    pub fn new(vocab: &LlamaVocab<'_>) -> Self {
        let mut buffer = Vec::with_capacity(32);
        let lengths = (0..vocab.n_tokens())
            .map(|id| {
                buffer.clear();
                vocab.token_to_piece_into(LlamaToken(id), &mut buffer, true, None);
                u32::try_from(buffer.len()).unwrap_or(u32::MAX)
            })
            .collect();
        Self(lengths)
    }

    /// Where each of `tokens` ends in the text they were read from, when their pieces
    /// spell a text of `text_len` bytes. Byte-level BPE vocabularies always do; one that
    /// adds a leading space or normalises does not, and the caller tokenises prefixes
    /// instead.
    pub fn token_ends(&self, tokens: &[LlamaToken], text_len: usize) -> Option<TokenEnds> {
        let mut end = 0usize;
        let mut ends = Vec::with_capacity(tokens.len());
        for token in tokens {
            let length = usize::try_from(token.0)
                .ok()
                .and_then(|id| self.0.get(id))?;
            end += *length as usize;
            ends.push(end);
        }
        (end == text_len).then_some(TokenEnds(ends))
    }
}

/// The byte offset at which each token of a prompt ends.
pub(crate) struct TokenEnds(Vec<usize>);

impl TokenEnds {
    /// Tokens that lie wholly before byte `at`: the prompt's tokens a prefix ending there
    /// shares with it.
    pub fn tokens_before(&self, at: usize) -> usize {
        self.0.partition_point(|&end| end <= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boundary_inside_a_token_counts_only_the_tokens_before_it() {
        let ends = TokenEnds(vec![3, 5, 9]);
        assert_eq!(ends.tokens_before(0), 0);
        assert_eq!(ends.tokens_before(5), 2);
        assert_eq!(ends.tokens_before(7), 2);
        assert_eq!(ends.tokens_before(9), 3);
        assert_eq!(ends.tokens_before(100), 3);
    }
}
