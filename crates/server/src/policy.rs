//! The policy guard, per workspace: personal data redacted from prompts before they reach a
//! model (emails, phone numbers, card numbers that pass the Luhn check, IBANs but their last
//! four characters), prompts carrying credentials refused, and URL sources limited to an
//! allowlist that never admits private, loopback or link-local addresses. Every action is
//! counted in metrics and written to the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::LazyLock;

use missive_protocol::content::{ContentBlockParam, DocumentSource};
use missive_protocol::messages::MessagesRequest;
use missive_store::Store;
use regex::Regex;
use serde_json::Value;

use crate::error::ApiError;
use missive_tools::public_url::{self, Rules};

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
    /// Private hosts or addresses URL sources may name all the same (the operator's own).
    pub private_hosts: Vec<String>,
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

fn check_credentials(text: &str, at: &str) -> Result<(), ApiError> {
    if let Some(found) = CREDENTIAL.as_ref().and_then(|re| re.find(text)) {
        let kind = found.as_str().chars().take(8).collect::<String>();
        return Err(ApiError::invalid(format!(
            "{at}: the prompt carries a credential (`{kind}…`); remove it before sending. This workspace refuses prompts with secrets."
        )));
    }
    Ok(())
}

/// Applies `policy` to `request` in place: every string a model would read (system,
/// text, thinking, tool inputs and results, document text, titles and context, tool
/// descriptions) is checked for credentials and redacted. Returns what was redacted;
/// refuses (400, naming the field) prompts with credentials.
pub fn apply(policy: &Policy, request: &mut MessagesRequest) -> Result<Actions, ApiError> {
    let mut actions = Actions::default();
    if !policy.redact_pii && !policy.refuse_credentials {
        return Ok(actions);
    }
    let mut visit = |text: &mut String, at: &str| -> Result<(), ApiError> {
        if policy.refuse_credentials {
            check_credentials(text, at)?;
        }
        if policy.redact_pii {
            *text = redact(text, &mut actions);
        }
        Ok(())
    };
    let mut system = to_value(&request.system)?;
    walk(&mut system, "system", &mut visit)?;
    let mut messages = to_value(&request.messages)?;
    walk(&mut messages, "messages", &mut visit)?;
    request.system = from_value(system)?;
    request.messages = from_value(messages)?;
    for (i, tool) in request.tools.iter_mut().flatten().enumerate() {
        if let Some(description) = &mut tool.description {
            visit(description, &format!("tools.{i}.description"))?;
        }
        if let Some(schema) = &mut tool.input_schema {
            walk_schema(schema, &format!("tools.{i}.input_schema"), &mut visit)?;
        }
    }
    Ok(actions)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(ApiError::internal)
}

type Visit<'a> = dyn FnMut(&mut String, &str) -> Result<(), ApiError> + 'a;

/// Keys whose strings are identifiers or encodings, never text a model reads.
const NOT_TEXT: [&str; 9] = [
    "type",
    "id",
    "tool_use_id",
    "signature",
    "media_type",
    "file_id",
    "name",
    "cache_control",
    "url",
];

/// Visits every string of a content tree that a model reads as text.
fn walk(value: &mut Value, at: &str, visit: &mut Visit<'_>) -> Result<(), ApiError> {
    match value {
        Value::String(text) => visit(text, at),
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, item)| walk(item, &format!("{at}.{i}"), visit)),
        Value::Object(map) => {
            // Base64 payloads and redacted thinking are opaque bytes, not text.
            let opaque = matches!(
                map.get("type").and_then(Value::as_str),
                Some("base64" | "redacted_thinking")
            );
            for (key, item) in map.iter_mut() {
                if NOT_TEXT.contains(&key.as_str()) || (opaque && key == "data") {
                    continue;
                }
                walk(item, &format!("{at}.{key}"), visit)?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Visits the prose of a JSON schema (descriptions, titles, examples), not its keywords.
fn walk_schema(value: &mut Value, at: &str, visit: &mut Visit<'_>) -> Result<(), ApiError> {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, item)| walk_schema(item, &format!("{at}.{i}"), visit)),
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let at = format!("{at}.{key}");
                match (key.as_str(), item) {
                    ("description" | "title", Value::String(text)) => visit(text, &at)?,
                    ("examples" | "default" | "const" | "enum", item) => walk(item, &at, visit)?,
                    (_, item) => walk_schema(item, &at, visit)?,
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// URL sources one request may name.
pub const MAX_URL_SOURCES: usize = 100;

/// How long resolving one URL source's host may take.
const LOOKUP_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Every URL source in the request (images and documents, also inside tool results), with
/// where it is.
pub fn url_sources(request: &MessagesRequest) -> Vec<(String, String)> {
    missive_protocol::walk::blocks(&request.messages)
        .filter_map(|(at, block)| {
            let url = match block {
                ContentBlockParam::Document {
                    source: DocumentSource::Url { url },
                    ..
                } => url.as_str(),
                ContentBlockParam::Image { source, .. } => source.get("url")?.as_str()?,
                _ => return None,
            };
            Some((format!("{at}.source.url"), url.to_owned()))
        })
        .collect()
}

/// Refuses (400, naming the field) any URL source that is not a public http(s) address,
/// or not on the workspace's allowlist. Runs for every workspace, policy or not.
pub async fn check_urls(
    policies: &Policies,
    policy: &Policy,
    request: &MessagesRequest,
) -> Result<(), ApiError> {
    let rules = Rules {
        allowlist: policy.url_allowlist.as_deref(),
        private_hosts: &policies.private_hosts,
    };
    let sources = url_sources(request);
    // Each is a name lookup: bounded in number (the Claude API takes at most 100 images a
    // request) and in time.
    if sources.len() > MAX_URL_SOURCES {
        return Err(ApiError::invalid(format!(
            "messages: a request may name at most {MAX_URL_SOURCES} URL sources (got {})",
            sources.len()
        )));
    }
    for (at, url) in sources {
        match tokio::time::timeout(LOOKUP_TIME_LIMIT, public_url::check(&url, rules)).await {
            Ok(checked) => checked.map_err(|e| ApiError::invalid(format!("{at}: {e}")))?,
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "{at}: the host could not be resolved within {} s",
                    LOOKUP_TIME_LIMIT.as_secs()
                )))
            }
        };
    }
    Ok(())
}

/// Redaction as a function, for texts a model reads after admission (what server tools
/// bring back); `None` when the policy redacts nothing.
pub fn guard(policy: &Policy) -> Option<missive_tools::rounds::Guard> {
    policy.redact_pii.then(|| {
        let guard: missive_tools::rounds::Guard =
            std::sync::Arc::new(|text: &str| redact(text, &mut Actions::default()));
        guard
    })
}

/// Counts and audits what the guard did to one request.
pub fn record(
    store: Option<&Arc<dyn Store>>,
    workspace_id: &str,
    key_id: &str,
    outcome: &Result<Actions, ApiError>,
) {
    let (action, detail) = match outcome {
        Ok(a) if a.total() == 0 => return,
        Ok(a) => (
            "policy.redact",
            serde_json::json!({"emails": a.emails, "phones": a.phones, "cards": a.cards, "ibans": a.ibans}),
        ),
        Err(e) => ("policy.refuse", serde_json::json!({"reason": e.message})),
    };
    metrics::counter!("missive_policy_actions_total", "workspace" => workspace_id.to_owned(), "action" => action)
        .increment(1);
    if let Some(store) = store {
        let entry = missive_store::AuditEntry {
            at_ms: crate::ids::now_ms(),
            actor: key_id.to_owned(),
            action: action.to_owned(),
            target: crate::request_id::current().unwrap_or_default(),
            detail: detail.to_string(),
        };
        if let Err(err) = store.audit(&entry) {
            tracing::error!(error = %err, "writing the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_server_tools_bring_back_is_redacted_like_the_prompt() {
        let redacting = Policy {
            redact_pii: true,
            ..Policy::default()
        };
        let redact = guard(&redacting).unwrap();
        let page = redact("Write to jane.doe@example.com for otter facts.");
        assert!(!page.contains("jane.doe@example.com"), "{page}");
        assert!(page.contains("otter facts"));
        assert!(guard(&Policy::default()).is_none());
    }

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
    fn every_text_a_model_reads_is_redacted_and_identifiers_are_not() {
        let mut request = missive_protocol::parse_messages_request(
            br#"{"model":"m","max_tokens":5,
            "system":"ops ada@example.com",
            "tools":[{"name":"t","description":"mail bob@example.com","input_schema":{"type":"object","properties":{"to":{"type":"string","description":"e.g. cy@example.com"}}}}],
            "messages":[{"role":"user","content":[
              {"type":"document","source":{"type":"content","content":[{"type":"text","text":"dan@example.com"}]},"title":"eve@example.com","context":"fay@example.com"},
              {"type":"text","text":"hi"}]},
              {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":{"to":"gus@example.com"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sent to hal@example.com"},{"type":"document","source":{"type":"text","media_type":"text/plain","data":"ivy@example.com"}}]}]}]}"#,
        )
        .unwrap();
        let policy = Policy {
            redact_pii: true,
            ..Policy::default()
        };
        let actions = apply(&policy, &mut request).unwrap();
        let text = serde_json::to_string(&request).unwrap();
        assert!(!text.contains("@example.com"), "{text}");
        assert_eq!(actions.emails, 9, "{text}");
        assert!(text.contains("toolu_1"), "{text}");
    }

    #[test]
    fn url_sources_inside_tool_results_are_found() {
        let request = missive_protocol::parse_messages_request(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"tool_use","id":"x","name":"t","input":{}}]},
              {"role":"user","content":[
              {"type":"tool_result","tool_use_id":"x","content":[{"type":"image","source":{"type":"url","url":"http://10.0.0.1/a.png"}}]}]}]}"#,
        )
        .unwrap();
        let found = url_sources(&request);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "messages.2.content.0.content.0.source.url");
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
