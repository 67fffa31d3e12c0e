//! Tool search (`tool_search_tool_regex_*`, `tool_search_tool_bm25_*`): the model searches
//! the request's deferred tools (`defer_loading: true`) by a regular expression or by words,
//! and the tools it finds load for the rest of the call, as a `tool_reference` block loads
//! them in a conversation. Each tool is searched by its name, its description, and the
//! names and descriptions of its arguments.

use missive_protocol::content::ContentBlock;
use missive_protocol::tools::Tool;
use serde_json::{json, Value};

use crate::Outcome;

/// How the model searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `pattern`: a regular expression (Python `re.search` syntax, which the `regex` crate
    /// shares apart from look-around and backreferences).
    Regex,
    /// `query`: words, ranked by Okapi BM25.
    Bm25,
}

/// The longest pattern the regex search takes, as on the Claude API.
const MAX_PATTERN_CHARS: usize = 200;
/// Tools one search returns unless the call asks for fewer or more.
const DEFAULT_LIMIT: usize = 5;
/// The most tools one search returns.
const MAX_LIMIT: usize = 20;
/// A compiled pattern's size cap: a short pattern can still compile to a huge automaton
/// (`a{1000}{1000}`), and the search runs on the request path.
const COMPILED_PATTERN_BYTES: usize = 1 << 20;
/// Deepest nesting of an input schema searched for argument names.
const MAX_SCHEMA_DEPTH: usize = 8;

/// The deferred tools of one request, ready to search; the definitions load what a search
/// finds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    tools: Vec<Tool>,
    /// Per tool, what is searched: its name, its description, then each argument's name
    /// and description.
    fields: Vec<Vec<String>>,
}

impl Catalog {
    /// The deferred tools among `tools`.
    pub fn of<'a>(tools: impl IntoIterator<Item = &'a Tool>) -> Self {
        let tools: Vec<Tool> = tools
            .into_iter()
            .filter(|t| t.defer_loading == Some(true))
            .cloned()
            .collect();
        let fields = tools
            .iter()
            .map(|tool| {
                let mut fields = vec![tool.name.clone()];
                fields.extend(tool.description.clone());
                if let Some(schema) = &tool.input_schema {
                    argument_fields(schema, 0, &mut fields);
                }
                fields
            })
            .collect();
        Self { tools, fields }
    }

    /// The definition of the deferred tool `name`.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    fn name(&self, i: usize) -> String {
        self.tools[i].name.clone()
    }

    fn matching(&self, pattern: &regex::Regex, limit: usize) -> Vec<String> {
        (0..self.tools.len())
            .filter(|&i| self.fields[i].iter().any(|f| pattern.is_match(f)))
            .take(limit)
            .map(|i| self.name(i))
            .collect()
    }

    /// Okapi BM25 (k1 1.2, b 0.75) of each tool against `query`: the best `limit` with a
    /// positive score, ties in the request's order.
    fn ranked(&self, query: &str, limit: usize) -> Vec<String> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let docs: Vec<Vec<String>> = self
            .fields
            .iter()
            .map(|fields| fields.iter().flat_map(|f| words(f)).collect())
            .collect();
        if docs.is_empty() {
            return Vec::new();
        }
        let mut terms = words(query);
        terms.sort();
        terms.dedup();
        let n = docs.len() as f64;
        let average = docs.iter().map(Vec::len).sum::<usize>() as f64 / n;
        let mut scores = vec![0.0f64; docs.len()];
        for term in &terms {
            let with_term = docs.iter().filter(|d| d.contains(term)).count() as f64;
            if with_term == 0.0 {
                continue;
            }
            let idf = ((n - with_term + 0.5) / (with_term + 0.5) + 1.0).ln();
            for (doc, score) in docs.iter().zip(&mut scores) {
                let tf = doc.iter().filter(|w| *w == term).count() as f64;
                let norm = K1 * (1.0 - B + B * doc.len() as f64 / average.max(1.0));
                *score += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let mut order: Vec<usize> = (0..docs.len()).filter(|&i| scores[i] > 0.0).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(limit)
            .map(|i| self.name(i))
            .collect()
    }
}

/// The names and descriptions of a schema's properties, nested ones included.
fn argument_fields(schema: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            out.push(name.clone());
            if let Some(description) = property.get("description").and_then(Value::as_str) {
                out.push(description.to_owned());
            }
            argument_fields(property, depth + 1, out);
        }
    }
    if let Some(items) = schema.get("items") {
        argument_fields(items, depth + 1, out);
    }
}

/// Lowercase words, split at anything not alphanumeric and at camelCase humps, so
/// `getWeather` and `get_weather` both hold `weather`.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_numeric();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The description and input schema the model is given for a tool search tool.
pub fn definition(mode: Mode) -> (&'static str, Value) {
    match mode {
        Mode::Regex => (
            "Search for tools that are not loaded yet, by a regular expression (Python re.search syntax; (?i) ignores case) matched against each tool's name, description, argument names and argument descriptions. The tools found can be called afterwards.",
            json!({
                "type": "object",
                "properties": {"pattern": {"type": "string", "description": "The regular expression, at most 200 characters."}},
                "required": ["pattern"],
                "additionalProperties": false
            }),
        ),
        Mode::Bm25 => (
            "Search for tools that are not loaded yet, by a description in words of what the tool should do. The tools found can be called afterwards.",
            json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What the tool should do, in a few words."}},
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
    }
}

/// Runs one search; the outcome's result names the tools found ([`found`]).
pub fn run(mode: Mode, catalog: &Catalog, input: &Value, tool_use_id: &str) -> Outcome {
    let limit = match input.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(value) => match value.as_u64().filter(|n| *n >= 1) {
            Some(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            None => return invalid(tool_use_id, "`limit` must be a positive integer"),
        },
    };
    let names = match mode {
        Mode::Regex => {
            let Some(pattern) = input.get("pattern").and_then(Value::as_str) else {
                return invalid(tool_use_id, "`pattern` must be a string");
            };
            if pattern.chars().count() > MAX_PATTERN_CHARS {
                return invalid(
                    tool_use_id,
                    &format!("`pattern` is longer than {MAX_PATTERN_CHARS} characters"),
                );
            }
            let compiled = regex::RegexBuilder::new(pattern)
                .size_limit(COMPILED_PATTERN_BYTES)
                .dfa_size_limit(COMPILED_PATTERN_BYTES)
                .build();
            match compiled {
                Ok(pattern) => catalog.matching(&pattern, limit),
                Err(err) => return invalid(tool_use_id, &format!("`pattern` is not valid: {err}")),
            }
        }
        Mode::Bm25 => {
            let Some(query) = input
                .get("query")
                .and_then(Value::as_str)
                .filter(|q| !q.trim().is_empty())
            else {
                return invalid(tool_use_id, "`query` must be a non-empty string");
            };
            catalog.ranked(query, limit)
        }
    };
    let for_model = if names.is_empty() {
        "No tools matched the search.".to_owned()
    } else {
        format!("Tools found: {}.", names.join(", "))
    };
    let references: Vec<Value> = names
        .iter()
        .map(|name| json!({"type": "tool_reference", "tool_name": name}))
        .collect();
    Outcome {
        result: ContentBlock::ToolSearchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({"type": "tool_search_tool_search_result", "tool_references": references}),
        },
        for_model,
        is_error: false,
        usage: Default::default(),
    }
}

/// The error block of a search that could not run.
pub fn error(tool_use_id: &str, code: &str, message: Option<&str>) -> Outcome {
    let mut content = json!({"type": "tool_search_tool_result_error", "error_code": code});
    if let Some(message) = message {
        content["error_message"] = json!(message);
    }
    Outcome {
        result: ContentBlock::ToolSearchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content,
        },
        for_model: format!("The tool search failed: {}", message.unwrap_or(code)),
        is_error: true,
        usage: Default::default(),
    }
}

fn invalid(tool_use_id: &str, message: &str) -> Outcome {
    error(tool_use_id, "invalid_tool_input", Some(message))
}

/// The tools a search result names; empty for an error or any other block.
pub fn found(result: &ContentBlock) -> Vec<String> {
    let ContentBlock::ToolSearchToolResult { content, .. } = result else {
        return Vec::new();
    };
    references(content)
}

/// The `tool_name`s of a `tool_search_tool_search_result`'s references.
pub fn references(content: &Value) -> Vec<String> {
    if content["type"] != "tool_search_tool_search_result" {
        return Vec::new();
    }
    content["tool_references"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["tool_name"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(json!([
            {"name": "read_file", "description": "Read a file.", "input_schema": {"type": "object"}},
            {"name": "get_weather", "description": "Current weather and forecast for a city.", "defer_loading": true,
             "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}}},
            {"name": "sendSlackMessage", "description": "Post a message to a channel.", "defer_loading": true,
             "input_schema": {"type": "object", "properties": {"channel": {"type": "string"},
                "blocks": {"type": "array", "items": {"type": "object", "properties": {"emoji": {"type": "string"}}}}}}},
            {"name": "get_stock_price", "description": "Latest price of a stock ticker.", "defer_loading": true,
             "input_schema": {"type": "object", "properties": {"ticker": {"type": "string"}}}}
        ]))
        .unwrap()
    }

    fn search(mode: Mode, input: Value) -> Outcome {
        run(mode, &Catalog::of(&tools()), &input, "srvtoolu_1")
    }

    #[test]
    fn a_pattern_matches_names_descriptions_and_arguments_of_deferred_tools_only() {
        let names = |pattern: &str| found(&search(Mode::Regex, json!({"pattern": pattern})).result);
        assert_eq!(names("weather"), ["get_weather"]);
        assert_eq!(names("^get_"), ["get_weather", "get_stock_price"]);
        // Arguments, nested ones included; read_file is loaded already, so never found.
        assert_eq!(
            names("emoji|ticker"),
            ["sendSlackMessage", "get_stock_price"]
        );
        assert!(names("read_file").is_empty());
        // Case counts, as in Python, unless the pattern says otherwise.
        assert!(names("Weather").is_empty());
        assert_eq!(names("(?i)WEATHER"), ["get_weather"]);
        let limited = search(Mode::Regex, json!({"pattern": ".", "limit": 1}));
        assert_eq!(found(&limited.result), ["get_weather"]);
    }

    #[test]
    fn words_rank_the_tools_that_share_them() {
        let names = |query: &str| found(&search(Mode::Bm25, json!({"query": query})).result);
        assert_eq!(
            names("what is the weather forecast in Paris")[0],
            "get_weather"
        );
        assert_eq!(names("send a slack message")[0], "sendSlackMessage");
        assert!(names("quantum chromodynamics").is_empty());
        assert_eq!(
            words("getWeather get_weather2"),
            ["get", "weather", "get", "weather2"]
        );
    }

    #[test]
    fn bad_input_is_an_error_block_never_a_panic() {
        for (mode, input, says) in [
            (Mode::Regex, json!({"pattern": "(unclosed"}), "not valid"),
            (
                Mode::Regex,
                json!({"pattern": "a".repeat(201)}),
                "longer than 200",
            ),
            (
                Mode::Regex,
                json!({"pattern": "a{1000}{1000}"}),
                "not valid",
            ),
            (Mode::Regex, json!({"query": "weather"}), "`pattern`"),
            (Mode::Bm25, json!({"query": " "}), "`query`"),
            (Mode::Bm25, json!({"query": "x", "limit": 0}), "`limit`"),
        ] {
            let outcome = search(mode, input);
            assert!(outcome.is_error);
            let ContentBlock::ToolSearchToolResult { content, .. } = &outcome.result else {
                panic!("{:?}", outcome.result)
            };
            assert_eq!(content["type"], "tool_search_tool_result_error");
            assert_eq!(content["error_code"], "invalid_tool_input");
            assert!(
                content["error_message"].as_str().unwrap().contains(says),
                "{content}"
            );
            assert!(found(&outcome.result).is_empty());
        }
    }

    #[test]
    fn a_result_block_is_the_sdks_shape() {
        let outcome = search(Mode::Regex, json!({"pattern": "stock"}));
        assert_eq!(
            serde_json::to_value(&outcome.result).unwrap(),
            json!({"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_1", "content": {
                "type": "tool_search_tool_search_result",
                "tool_references": [{"type": "tool_reference", "tool_name": "get_stock_price"}]}})
        );
        assert_eq!(outcome.for_model, "Tools found: get_stock_price.");
    }
}
