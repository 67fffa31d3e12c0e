//! The policy guard, per workspace: personal data redacted from prompts before they reach a
//! model (emails, phone numbers, card numbers that pass the Luhn check, IBANs but their last
//! four characters), prompts carrying credentials refused, and URL sources limited to an
//! allowlist that never admits private, loopback or link-local addresses. Every action is
//! counted in metrics and written to the audit log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use missive_protocol::content::{ContentBlockParam, DocumentSource, ToolResultContent};
use missive_protocol::messages::{MessageContent, MessagesRequest, SystemPrompt};
use regex::Regex;
use serde_json::Value;

use crate::error::ApiError;

/// What a workspace's requests are held to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub redact_pii: bool,
    pub refuse_credentials: bool,
    /// Hosts URL-sourced images and documents may come from; `None`: any public host.
    pub url_allowlist: Option<Vec<String>>,
}

/// Policies by workspace name, with a default.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub default: Policy,
    pub workspaces: HashMap<String, Policy>,
}

impl Policies {
    pub fn for_workspace(&self, name: &str) -> &Policy {
        self.workspaces.get(name).unwrap_or(&self.default)
    }
}

/// What the guard did to one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Actions {
    pub emails: usize,
    pub phones: usize,
    pub cards: usize,
    pub ibans: usize,
}

impl Actions {
    pub fn total(&self) -> usize {
        self.emails + self.phones + self.cards + self.ibans
    }
}

static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").ok()
});
static CARD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b(?:\d[ -]?){12,18}\d\b").ok());
static IBAN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b").ok());
static PHONE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}\b").ok()
});
static CREDENTIAL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(sk-ant-[A-Za-z0-9]{2,8}-[A-Za-z0-9_-]{20,}",
        r"|sk-(?:proj-)?[A-Za-z0-9_-]{32,}",
        r"|AKIA[0-9A-Z]{16}",
        r"|gh[pousr]_[A-Za-z0-9]{36}",
        r"|xox[abprs]-[A-Za-z0-9-]{10,}",
        r"|-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----)"
    ))
    .ok()
});

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The text with personal data replaced; counts what was replaced.
pub fn redact(text: &str, actions: &mut Actions) -> String {
    let mut out = text.to_owned();
    if let Some(re) = CARD.as_ref() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let digits: Vec<u32> = c[0].chars().filter_map(|ch| ch.to_digit(10)).collect();
                if (13..=19).contains(&digits.len()) && luhn(&digits) {
                    actions.cards += 1;
                    "[REDACTED CARD]".to_owned()
                } else {
                    c[0].to_owned()
                }
            })
            .into_owned();
    }
    if let Some(re) = IBAN.as_ref() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let compact: String = c[0].chars().filter(|ch| !ch.is_whitespace()).collect();
                if !(15..=34).contains(&compact.len()) {
                    return c[0].to_owned();
                }
                actions.ibans += 1;
                let keep: String = compact.chars().skip(compact.len() - 4).collect();
                format!("[IBAN ****{keep}]")
            })
            .into_owned();
    }
    if let Some(re) = EMAIL.as_ref() {
        out = re
            .replace_all(&out, |_: &regex::Captures<'_>| {
                actions.emails += 1;
                "[REDACTED EMAIL]"
            })
            .into_owned();
    }
    if let Some(re) = PHONE.as_ref() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let digits = c[0].chars().filter(char::is_ascii_digit).count();
                if (7..=15).contains(&digits) {
                    actions.phones += 1;
                    "[REDACTED PHONE]".to_owned()
                } else {
                    c[0].to_owned()
                }
            })
            .into_owned();
    }
    out
}

/// Whether a URL may be fetched: http(s), not an address inside this network, and on the
/// allowlist when there is one.
pub fn url_allowed(url: &str, allowlist: Option<&[String]>) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    }
    .to_ascii_lowercase();
    if host.is_empty()
        || host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
    {
        return Err(format!("`{host}` is not a public host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        let private = match ip {
            IpAddr::V4(v4) => {
                v4.is_private()
                    || v4.is_loopback()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        if private {
            return Err(format!(
                "`{host}` is a private, loopback or link-local address"
            ));
        }
    }
    if let Some(list) = allowlist {
        let allowed = list.iter().any(|a| {
            host == a.to_ascii_lowercase()
                || host.ends_with(&format!(".{}", a.to_ascii_lowercase()))
        });
        if !allowed {
            return Err(format!("`{host}` is not on this workspace's URL allowlist"));
        }
    }
    Ok(())
}

fn check_credentials(text: &str, at: &str) -> Result<(), ApiError> {
    if let Some(found) = CREDENTIAL.as_ref().and_then(|re| re.find(text)) {
        let kind = found.as_str().chars().take(8).collect::<String>();
        return Err(ApiError::invalid(format!(
            "{at}: the prompt carries a credential (`{kind}…`); remove it before sending. This workspace refuses prompts with secrets."
        )));
    }
    Ok(())
}

/// Applies `policy` to `request` in place. Returns what was redacted; refuses (400) prompts
/// with credentials and URL sources outside the rules.
pub fn apply(policy: &Policy, request: &mut MessagesRequest) -> Result<Actions, ApiError> {
    let mut actions = Actions::default();
    if *policy == Policy::default() {
        return Ok(actions);
    }
    let visit = |text: &mut String, at: &str, actions: &mut Actions| -> Result<(), ApiError> {
        if policy.refuse_credentials {
            check_credentials(text, at)?;
        }
        if policy.redact_pii {
            *text = redact(text, actions);
        }
        Ok(())
    };
    match &mut request.system {
        Some(SystemPrompt::Text(text)) => visit(text, "system", &mut actions)?,
        Some(SystemPrompt::Blocks(blocks)) => {
            for (i, b) in blocks.iter_mut().enumerate() {
                visit(&mut b.text, &format!("system.{i}.text"), &mut actions)?;
            }
        }
        None => {}
    }
    for (turn, message) in request.messages.iter_mut().enumerate() {
        match &mut message.content {
            MessageContent::Text(text) => {
                visit(text, &format!("messages.{turn}.content"), &mut actions)?
            }
            MessageContent::Blocks(blocks) => {
                for (j, block) in blocks.iter_mut().enumerate() {
                    let at = format!("messages.{turn}.content.{j}");
                    match block {
                        ContentBlockParam::Text { text, .. } => visit(text, &at, &mut actions)?,
                        ContentBlockParam::ToolResult {
                            content: Some(ToolResultContent::Text(text)),
                            ..
                        } => visit(text, &at, &mut actions)?,
                        ContentBlockParam::ToolResult {
                            content: Some(ToolResultContent::Blocks(inner)),
                            ..
                        } => {
                            for b in inner {
                                if let ContentBlockParam::Text { text, .. } = b {
                                    visit(text, &at, &mut actions)?;
                                }
                            }
                        }
                        ContentBlockParam::Document {
                            source: DocumentSource::Text { data, .. },
                            ..
                        } => visit(data, &at, &mut actions)?,
                        ContentBlockParam::Document {
                            source: DocumentSource::Url { url },
                            ..
                        } => {
                            url_allowed(url, policy.url_allowlist.as_deref())
                                .map_err(|e| ApiError::invalid(format!("{at}.source.url: {e}")))?;
                        }
                        ContentBlockParam::Image { source, .. } => {
                            if let Some(url) = source.get("url").and_then(Value::as_str) {
                                url_allowed(url, policy.url_allowlist.as_deref()).map_err(|e| {
                                    ApiError::invalid(format!("{at}.source.url: {e}"))
                                })?;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_redacted_and_cards_need_a_valid_luhn() {
        let mut a = Actions::default();
        let text = "Mail ada@example.com or call +44 20 7946 0958. Card 4111 1111 1111 1111, \
                    not 4111 1111 1111 1112. IBAN GB82 WEST 1234 5698 7654 32.";
        let out = redact(text, &mut a);
        assert!(!out.contains("ada@example.com"), "{out}");
        assert!(!out.contains("7946 0958"), "{out}");
        assert!(!out.contains("4111 1111 1111 1111"), "{out}");
        assert!(out.contains("[IBAN ****5432]"), "{out}");
        assert_eq!((a.emails, a.cards, a.ibans), (1, 1, 1), "{out}");
        assert!(a.phones >= 1, "{out}");
    }

    #[test]
    fn private_addresses_never_pass_and_the_allowlist_holds() {
        for bad in [
            "http://127.0.0.1/x",
            "http://10.0.0.5/x",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://localhost:8080/",
            "file:///etc/passwd",
        ] {
            assert!(url_allowed(bad, None).is_err(), "{bad}");
        }
        assert!(url_allowed("https://example.com/a.png", None).is_ok());
        let list = vec!["example.com".to_owned()];
        assert!(url_allowed("https://cdn.example.com/a.png", Some(&list)).is_ok());
        assert!(url_allowed("https://evil.com/a.png", Some(&list)).is_err());
    }

    #[test]
    fn credentials_are_found() {
        assert!(
            check_credentials("my key is sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", "m")
                .is_err()
        );
        assert!(check_credentials("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "m").is_err());
        assert!(check_credentials("AKIAIOSFODNN7EXAMPLE", "m").is_err());
        assert!(check_credentials("nothing secret here", "m").is_ok());
    }
}
