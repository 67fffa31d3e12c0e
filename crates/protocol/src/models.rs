//! `GET /v1/models`: `ModelInfo`, its capabilities, and the list page envelope.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    #[serde(rename = "type")]
    pub kind: ModelTag,
    pub id: String,
    pub display_name: String,
    pub created_at: String,
    pub max_input_tokens: Option<u32>,
    pub max_tokens: Option<u32>,
    pub capabilities: Option<ModelCapabilities>,
    /// `active` for every model a server serves.
    pub lifecycle: Lifecycle,
    /// Always written (`null` while active), as the SDKs' types expect the keys.
    pub deprecated_at: Option<String>,
    pub retires_at: Option<String>,
    /// The Claude model line (`opus`, `sonnet`…); `null` for models of no line.
    pub line: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    #[default]
    Active,
    Deprecated,
    Retired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTag {
    #[default]
    Model,
}

/// `{"supported": bool}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Supported {
    pub supported: bool,
}

impl Supported {
    pub fn from(supported: bool) -> Self {
        Self { supported }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelCapabilities {
    pub batch: Supported,
    pub citations: Supported,
    pub code_execution: Supported,
    pub image_input: Supported,
    pub pdf_input: Supported,
    pub structured_outputs: Supported,
    pub thinking: ThinkingCapability,
    pub context_management: Supported,
    pub effort: EffortCapability,
    pub server_tools: ServerToolsCapability,
}

/// `output_config.effort` levels a model takes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EffortCapability {
    pub supported: bool,
    pub low: Supported,
    pub medium: Supported,
    pub high: Supported,
    pub max: Supported,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xhigh: Option<Supported>,
}

impl EffortCapability {
    /// Every effort level, or none.
    pub fn all(supported: bool) -> Self {
        Self {
            supported,
            low: Supported::from(supported),
            medium: Supported::from(supported),
            high: Supported::from(supported),
            max: Supported::from(supported),
            xhigh: Some(Supported::from(supported)),
        }
    }
}

/// Server tools a model can be given (run by the server, not the client).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerToolsCapability {
    pub supported: bool,
    pub code_execution: Supported,
    pub web_search: Supported,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ThinkingCapability {
    pub supported: bool,
    pub types: ThinkingTypes,
}

impl ThinkingCapability {
    /// Both thinking types supported, or neither.
    pub fn all(supported: bool) -> Self {
        Self {
            supported,
            types: ThinkingTypes {
                enabled: Supported::from(supported),
                adaptive: Supported::from(supported),
                // A reasoning template thinks again after each tool result.
                between_tools: Supported::from(supported),
                // Any model answers with thinking off.
                disabled: Supported::from(true),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ThinkingTypes {
    pub enabled: Supported,
    pub adaptive: Supported,
    pub between_tools: Supported,
    pub disabled: Supported,
}

/// The list envelope shared by every paginated endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

impl<T> Page<T> {
    /// Pages `items` (already in list order, each with an id) as the Claude API does:
    /// `after_id` returns the items after that id, `before_id` those just before it.
    pub fn paginate(
        items: Vec<T>,
        id_of: impl Fn(&T) -> &str,
        limit: usize,
        after_id: Option<&str>,
        before_id: Option<&str>,
    ) -> Self {
        let limit = limit.max(1);
        let position = |id: &str| items.iter().position(|item| id_of(item) == id);
        let (start, end) = match (after_id, before_id) {
            (_, Some(before)) => {
                let end = position(before).unwrap_or(0);
                (end.saturating_sub(limit), end)
            }
            (Some(after), None) => {
                let start = position(after).map_or(items.len(), |p| p + 1);
                (start, (start + limit).min(items.len()))
            }
            (None, None) => (0, limit.min(items.len())),
        };
        let has_more = if before_id.is_some() {
            start > 0
        } else {
            end < items.len()
        };
        let data: Vec<T> = items.into_iter().skip(start).take(end - start).collect();
        let first_id = data.first().map(|item| id_of(item).to_owned());
        let last_id = data.last().map(|item| id_of(item).to_owned());
        Self {
            data,
            has_more,
            first_id,
            last_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Page<String>) -> Vec<&str> {
        page.data.iter().map(String::as_str).collect()
    }

    #[test]
    fn paginate_walks_forward_and_back() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let first = Page::paginate(items.clone(), |s| s, 2, None, None);
        assert_eq!(ids(&first), ["a", "b"]);
        assert!(first.has_more);
        let second = Page::paginate(items.clone(), |s| s, 2, Some("b"), None);
        assert_eq!(ids(&second), ["c", "d"]);
        let last = Page::paginate(items.clone(), |s| s, 2, Some("d"), None);
        assert_eq!(ids(&last), ["e"]);
        assert!(!last.has_more);
        let back = Page::paginate(items, |s| s, 2, None, Some("c"));
        assert_eq!(ids(&back), ["a", "b"]);
        assert!(!back.has_more);
    }
}
