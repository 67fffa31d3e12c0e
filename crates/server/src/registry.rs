//! Prompts and schemas from the workspace's registry, named inside a request: a system
//! text block whose whole text is `{{prompt:NAME}}` (the `production` label),
//! `{{prompt:NAME@LABEL}}` or `{{prompt:NAME@VERSION}}`, and a schema that is only
//! `{"$ref": "missive:schemas/NAME@LABEL"}` in `output_config.format` or a tool's
//! `input_schema`. Each is replaced by the stored text or schema before any other check,
//! so the policy guard, the grammar and prompt caching see exactly what inline text would
//! give them. What served a response is named in its headers.

use missive_protocol::messages::{MessagesRequest, SystemBlock, SystemBlockType, SystemPrompt};
use missive_protocol::tools::OutputFormat;
use missive_store::{
    LabelTarget, RegistryEntry, RegistryKind, RegistryVersion, SplitShare, Store, PRODUCTION,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The headers that name the registry versions a response used.
pub const PROMPT_VERSION_HEADER: &str = "x-missive-prompt-version";
pub const SCHEMA_VERSION_HEADER: &str = "x-missive-schema-version";

/// The request header that names a prompt without touching `system`.
pub const PROMPT_HEADER: &str = "x-missive-prompt";

const SCHEMA_REF: &str = "missive:schemas/";

/// Which registry versions a request used, as `NAME@VERSION`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Used {
    pub prompts: Vec<String>,
    pub schemas: Vec<String>,
}

impl Used {
    /// What the ledger records: `NAME@VERSION`, comma-separated when several.
    pub fn prompt_version(&self) -> Option<String> {
        (!self.prompts.is_empty()).then(|| self.prompts.join(","))
    }

    pub fn schema_version(&self) -> Option<String> {
        (!self.schemas.is_empty()).then(|| self.schemas.join(","))
    }
}

/// A reference: the entry's name and what picks the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    pub name: &'a str,
    pub pick: Pick<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<'a> {
    Label(&'a str),
    Version(i64),
}

/// Names are what the registry's routes accept: letters, digits, `_`, `-`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `NAME`, `NAME@LABEL` or `NAME@VERSION`.
pub fn parse_reference(text: &str) -> Option<Reference<'_>> {
    let (name, pick) = match text.split_once('@') {
        None => (text, Pick::Label(PRODUCTION)),
        Some((name, pick)) => match pick.parse::<i64>() {
            Ok(version) => (name, Pick::Version(version)),
            Err(_) if valid_name(pick) => (name, Pick::Label(pick)),
            Err(_) => return None,
        },
    };
    valid_name(name).then_some(Reference { name, pick })
}

/// The prompt a system block's whole text names, if it names one.
fn prompt_reference(text: &str) -> Option<&str> {
    text.trim()
        .strip_prefix("{{prompt:")?
        .strip_suffix("}}")
        .map(str::trim)
}

/// The schema a `{"$ref": "missive:schemas/…"}` object names, if that is all it is.
fn schema_reference(schema: &Value) -> Option<&str> {
    let object = schema.as_object().filter(|o| o.len() == 1)?;
    object.get("$ref")?.as_str()?.strip_prefix(SCHEMA_REF)
}

/// The version a reference picks from an entry. A label that splits traffic picks by
/// `user`: the same user always gets the same version of the same split, so a
/// conversation does not change prompts halfway; without one, each request is drawn anew.
pub fn pick<'e>(
    entry: &'e RegistryEntry,
    pick: Pick<'_>,
    user: Option<&str>,
) -> Option<&'e RegistryVersion> {
    match pick {
        Pick::Version(version) => entry.version(version),
        Pick::Label(label) => match entry.label(label)? {
            LabelTarget::Version(version) => entry.version(*version),
            LabelTarget::Split(shares) => {
                let draw = match user {
                    Some(user) => sticky_draw(&entry.name, label, user),
                    None => fresh_draw(),
                };
                entry.version(choose(shares, draw)?)
            }
        },
    }
}

/// The share `draw` falls in, each share owning `weight` of the total.
fn choose(shares: &[SplitShare], draw: u64) -> Option<i64> {
    let total: u64 = shares.iter().map(|s| u64::from(s.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = draw % total;
    for share in shares {
        let weight = u64::from(share.weight);
        if point < weight {
            return Some(share.version);
        }
        point -= weight;
    }
    None
}

/// A stable, evenly spread number for one user under one split.
fn sticky_draw(name: &str, label: &str, user: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update([0])
        .chain_update(label)
        .chain_update([0])
        .chain_update(user)
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

fn fresh_draw() -> u64 {
    sticky_draw("", "", &crate::ids::new_id(""))
}

fn lookup(
    store: Option<&dyn Store>,
    workspace_id: &str,
    user: Option<&str>,
    kind: RegistryKind,
    reference: &str,
    field: &str,
) -> Result<RegistryVersion, ApiError> {
    // Without a store (governance off) there is no registry: the reference is refused,
    // not sent to the model as text.
    let store = store.ok_or_else(|| {
        ApiError::invalid(format!(
            "{field}: `{reference}` names the registry, which needs the store; this server runs without one"
        ))
    })?;
    let parsed = parse_reference(reference).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field}: `{reference}` is not a registry reference (NAME, NAME@LABEL or NAME@VERSION)"
        ))
    })?;
    let entry = store.registry_entry(workspace_id, kind, parsed.name)?;
    entry
        .as_ref()
        .and_then(|entry| pick(entry, parsed.pick, user))
        .cloned()
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{field}: {} `{reference}` is not in this workspace's registry",
                kind.as_str()
            ))
        })
}

/// Puts a `{{prompt:REFERENCE}}` block before the request's system prompt (the
/// `x-missive-prompt` header); [`resolve`] then fills it in like any other.
pub fn prepend_prompt(request: &mut MessagesRequest, reference: &str) {
    let block = SystemBlock {
        kind: SystemBlockType::Text,
        text: format!("{{{{prompt:{reference}}}}}"),
        cache_control: None,
    };
    let mut blocks = match request.system.take() {
        None => Vec::new(),
        Some(SystemPrompt::Text(text)) => vec![SystemBlock {
            text,
            ..block.clone()
        }],
        Some(SystemPrompt::Blocks(blocks)) => blocks,
    };
    blocks.insert(0, block);
    request.system = Some(SystemPrompt::Blocks(blocks));
}

/// Replaces every registry reference in the request; returns what was used.
pub fn resolve(
    store: Option<&dyn Store>,
    workspace_id: &str,
    request: &mut MessagesRequest,
) -> Result<Used, ApiError> {
    let mut used = Used::default();
    let user = request.metadata.as_ref().and_then(|m| m.user_id.clone());
    let user = user.as_deref();
    if let Some(SystemPrompt::Blocks(blocks)) = &mut request.system {
        for (i, block) in blocks.iter_mut().enumerate() {
            if let Some(reference) = prompt_reference(&block.text) {
                let found = lookup(
                    store,
                    workspace_id,
                    user,
                    RegistryKind::Prompt,
                    reference,
                    &format!("system.{i}.text"),
                )?;
                used.prompts
                    .push(format!("{}@{}", found.name, found.version));
                block.text = found.body;
            }
        }
    } else if let Some(SystemPrompt::Text(text)) = &mut request.system {
        if let Some(reference) = prompt_reference(text) {
            let found = lookup(
                store,
                workspace_id,
                user,
                RegistryKind::Prompt,
                reference,
                "system",
            )?;
            used.prompts
                .push(format!("{}@{}", found.name, found.version));
            *text = found.body;
        }
    }
    let mut schemas: Vec<(&mut Value, String)> = Vec::new();
    if let Some(OutputFormat::JsonSchema { schema }) = request
        .output_config
        .as_mut()
        .and_then(|c| c.format.as_mut())
    {
        schemas.push((schema, "output_config.format.schema".to_owned()));
    }
    if let Some(OutputFormat::JsonSchema { schema }) = request.output_format.as_mut() {
        schemas.push((schema, "output_format.schema".to_owned()));
    }
    for (i, tool) in request.tools.iter_mut().flatten().enumerate() {
        if let Some(schema) = tool.input_schema.as_mut() {
            schemas.push((schema, format!("tools.{i}.input_schema")));
        }
    }
    for (schema, field) in schemas {
        let Some(reference) = schema_reference(schema) else {
            continue;
        };
        let found = lookup(
            store,
            workspace_id,
            user,
            RegistryKind::Schema,
            reference,
            &field,
        )?;
        let stored: Value = serde_json::from_str(&found.body).map_err(ApiError::internal)?;
        used.schemas
            .push(format!("{}@{}", found.name, found.version));
        *schema = stored;
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_label_or_a_version() {
        assert_eq!(
            parse_reference("support"),
            Some(Reference {
                name: "support",
                pick: Pick::Label("production")
            })
        );
        assert_eq!(
            parse_reference("support@staging").map(|r| r.pick),
            Some(Pick::Label("staging"))
        );
        assert_eq!(
            parse_reference("support@3").map(|r| r.pick),
            Some(Pick::Version(3))
        );
        assert_eq!(parse_reference("sup port"), None);
        assert_eq!(parse_reference("a@b c"), None);
        assert_eq!(
            prompt_reference(" {{prompt:support@2}} "),
            Some("support@2")
        );
        assert_eq!(prompt_reference("Be kind. {{prompt:support}}"), None);
        assert_eq!(
            schema_reference(&serde_json::json!({"$ref": "missive:schemas/order@production"})),
            Some("order@production")
        );
        assert_eq!(
            schema_reference(
                &serde_json::json!({"$ref": "missive:schemas/order", "type": "object"})
            ),
            None,
            "only a schema that is the reference alone"
        );
    }

    #[test]
    fn a_split_draws_by_weight_and_sticks_per_user() {
        let shares = [
            SplitShare {
                version: 1,
                weight: 70,
            },
            SplitShare {
                version: 2,
                weight: 30,
            },
        ];
        assert_eq!(choose(&shares, 69), Some(1));
        assert_eq!(choose(&shares, 70), Some(2));
        assert_eq!(choose(&shares, 100), Some(1), "the draw wraps");
        assert_eq!(choose(&[], 5), None);
        let first: Vec<u64> = (0..50)
            .map(|u| sticky_draw("support", "production", &format!("user-{u}")))
            .collect();
        let again: Vec<u64> = (0..50)
            .map(|u| sticky_draw("support", "production", &format!("user-{u}")))
            .collect();
        assert_eq!(first, again);
        assert_ne!(
            sticky_draw("support", "production", "u"),
            sticky_draw("support", "staging", "u"),
            "each split draws on its own"
        );
    }

    #[test]
    fn without_a_store_a_reference_is_refused_and_plain_text_passes() {
        let body = br#"{"model":"m","max_tokens":5,"system":"{{prompt:support}}","messages":[{"role":"user","content":"x"}]}"#;
        let mut request = missive_protocol::parse_messages_request(body).unwrap();
        let refused = resolve(None, "w", &mut request).unwrap_err();
        assert!(refused.message.contains("support"), "{}", refused.message);
        let body = br#"{"model":"m","max_tokens":5,"system":"Be kind.","messages":[{"role":"user","content":"x"}]}"#;
        let mut request = missive_protocol::parse_messages_request(body).unwrap();
        assert_eq!(resolve(None, "w", &mut request).unwrap(), Used::default());
    }
}
