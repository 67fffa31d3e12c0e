//! Ids in the Claude API's prefixed style.

use rand::distr::Alphanumeric;
use rand::Rng;

/// `prefix_01` followed by 24 random base-62 characters, as the Claude API's ids look. The
/// characters come from the thread's cryptographic generator, so an id is as hard to guess
/// as before, without a system call per id (several ids are made per request).
pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 27);
    id.push_str(prefix);
    id.push_str("_01");
    id.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from),
    );
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_the_prefix_and_24_base62_characters() {
        let id = new_id("msg");
        let body = id.strip_prefix("msg_01").expect("prefixed");
        assert_eq!(body.len(), 24);
        assert!(body.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_id("msg"), id);
    }
}
