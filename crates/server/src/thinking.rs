//! Thinking-block signatures: an HMAC-SHA256 of the thought under a server secret, so a
//! thinking block a client echoes back in a later turn is known to be one this server
//! wrote, unchanged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use missive_protocol::content::ContentBlockParam;
use missive_protocol::messages::{MessageContent, MessagesRequest, Role};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Marks a signature as Missive's. A thinking block with any other signature was written
/// elsewhere (a session moved here from the Claude API): no backend renders it, so it
/// passes, where a Missive signature that fails to verify is a tampered block.
const PREFIX: &str = missive_backend::reasoning::SIGNATURE_PREFIX;

#[derive(Clone)]
pub struct ThinkingSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for ThinkingSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThinkingSigner(..)")
    }
}

impl ThinkingSigner {
    /// A signer under `key`, which must persist for signatures to survive a restart.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// A signer under a fresh random key (tests; servers without a store).
    pub fn ephemeral() -> Self {
        Self::new(uuid::Uuid::new_v4().as_bytes().repeat(2))
    }

    /// HMAC over the parts, each after a length, so no two part lists collide. HMAC takes
    /// keys of any length, so this is always `Some`.
    fn mac(&self, parts: &[&[u8]]) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Some(mac)
    }

    /// The signature of a thought written for `workspace`. When its text is omitted from
    /// the response, the signature carries the thought's digest and signs that, so it
    /// still stands for this one thought (and the client echoes an empty text).
    pub fn sign(&self, workspace: &str, thinking: &str, omitted: bool) -> String {
        let ws = workspace.as_bytes();
        if omitted {
            let digest = Sha256::digest(thinking.as_bytes());
            return self
                .mac(&[b"omitted", ws, &digest])
                .map(|mac| {
                    let mut bytes = digest.to_vec();
                    bytes.extend_from_slice(&mac.finalize().into_bytes());
                    format!("{PREFIX}{}", STANDARD.encode(bytes))
                })
                .unwrap_or_default();
        }
        self.mac(&[b"full", ws, thinking.as_bytes()])
            .map(|mac| format!("{PREFIX}{}", STANDARD.encode(mac.finalize().into_bytes())))
            .unwrap_or_default()
    }

    /// Constant-time check of a signature against the thought it claims to sign, for the
    /// workspace it was written for.
    pub fn verify(&self, workspace: &str, thinking: &str, signature: &str) -> bool {
        let Some(Ok(bytes)) = signature.strip_prefix(PREFIX).map(|s| STANDARD.decode(s)) else {
            return false;
        };
        let ws = workspace.as_bytes();
        match bytes.len() {
            32 => self
                .mac(&[b"full", ws, thinking.as_bytes()])
                .is_some_and(|mac| mac.verify_slice(&bytes).is_ok()),
            64 if thinking.is_empty() => {
                let (digest, tag) = bytes.split_at(32);
                self.mac(&[b"omitted", ws, digest])
                    .is_some_and(|mac| mac.verify_slice(tag).is_ok())
            }
            _ => false,
        }
    }

    /// Every `thinking` block in the request's assistant turns must carry this server's
    /// signature of its text, as the Claude API requires blocks be echoed unchanged.
    pub fn verify_history(
        &self,
        workspace: &str,
        request: &MessagesRequest,
    ) -> Result<(), ApiError> {
        for (i, message) in request.messages.iter().enumerate() {
            let MessageContent::Blocks(blocks) = &message.content else {
                continue;
            };
            if message.role != Role::Assistant {
                continue;
            }
            for (j, block) in blocks.iter().enumerate() {
                if let ContentBlockParam::Thinking {
                    thinking,
                    signature,
                    ..
                } = block
                {
                    // Written elsewhere: not rendered here, so nothing to protect.
                    if !signature.starts_with(PREFIX) {
                        continue;
                    }
                    if !self.verify(workspace, thinking, signature) {
                        return Err(ApiError::invalid(format!(
                            "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_the_text_key_and_workspace_they_were_made_for() {
        let signer = ThinkingSigner::new(b"server secret".to_vec());
        let signature = signer.sign("w1", "Let me think.", false);
        assert!(signer.verify("w1", "Let me think.", &signature));
        assert!(!signer.verify("w1", "Let me think!", &signature));
        assert!(!signer.verify("w2", "Let me think.", &signature));
        assert!(!ThinkingSigner::new(b"other".to_vec()).verify("w1", "Let me think.", &signature));
        assert!(!signer.verify("w1", "Let me think.", "not base64 at all"));
        assert!(!signer.verify("w1", "Let me think.", "msv1.not base64 at all"));
    }

    #[test]
    fn thinking_written_elsewhere_passes_and_a_tampered_missive_block_does_not() {
        let signer = ThinkingSigner::new(b"server secret".to_vec());
        let history = |signature: &str| {
            missive_protocol::parse_messages_request(
                serde_json::json!({"model": "m", "max_tokens": 5, "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "Hmm.", "signature": signature},
                        {"type": "redacted_thinking", "data": "EuoBCoYBGAIiQ"},
                        {"type": "text", "text": "Hello."}]},
                    {"role": "user", "content": "again"}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap()
        };
        // A Claude API signature (a session moved here): accepted, not rendered.
        assert!(signer
            .verify_history("w1", &history("EqQBCkgIARABGAIiQL2"))
            .is_ok());
        assert!(signer
            .verify_history("w1", &history(&signer.sign("w1", "Hmm.", false)))
            .is_ok());
        assert!(signer
            .verify_history("w1", &history(&signer.sign("w1", "Hmm!", false)))
            .is_err());
        assert!(signer
            .verify_history("w2", &history(&signer.sign("w1", "Hmm.", false)))
            .is_err());
    }

    #[test]
    fn omitted_thinking_signatures_stand_for_one_thought_not_for_empty_text() {
        let signer = ThinkingSigner::new(b"server secret".to_vec());
        let a = signer.sign("w1", "first thought", true);
        let b = signer.sign("w1", "second thought", true);
        assert_ne!(a, b);
        assert!(signer.verify("w1", "", &a));
        assert!(!signer.verify("w2", "", &a));
        // Echoed with text, an omitted signature no longer applies.
        assert!(!signer.verify("w1", "first thought", &a));
    }
}
