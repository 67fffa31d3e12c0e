//! Thinking-block signatures: an HMAC-SHA256 of the thought under a server secret, so a
//! thinking block a client echoes back in a later turn is known to be one this server
//! wrote, unchanged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use missive_protocol::content::ContentBlockParam;
use missive_protocol::messages::{MessageContent, MessagesRequest, Role};
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

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

    /// HMAC takes keys of any length, so this is always `Some`.
    fn mac(&self, thinking: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(thinking.as_bytes());
        Some(mac)
    }

    pub fn sign(&self, thinking: &str) -> String {
        self.mac(thinking)
            .map(|mac| STANDARD.encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Constant-time check of a signature against the thought it claims to sign.
    pub fn verify(&self, thinking: &str, signature: &str) -> bool {
        let Ok(bytes) = STANDARD.decode(signature) else {
            return false;
        };
        self.mac(thinking)
            .is_some_and(|mac| mac.verify_slice(&bytes).is_ok())
    }

    /// Every `thinking` block in the request's assistant turns must carry this server's
    /// signature of its text, as the Claude API requires blocks be echoed unchanged.
    pub fn verify_history(&self, request: &MessagesRequest) -> Result<(), ApiError> {
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
                    if !self.verify(thinking, signature) {
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
    fn signatures_verify_only_the_text_and_key_they_were_made_for() {
        let signer = ThinkingSigner::new(b"server secret".to_vec());
        let signature = signer.sign("Let me think.");
        assert!(signer.verify("Let me think.", &signature));
        assert!(!signer.verify("Let me think!", &signature));
        assert!(!ThinkingSigner::new(b"other".to_vec()).verify("Let me think.", &signature));
        assert!(!signer.verify("Let me think.", "not base64 at all"));
    }
}
