//! Lark rules for a call in an XML form (`output::xml_call`: Qwen3-Coder's, GLM's): the
//! function's name, then its schema's parameters in order, required ones always, each value
//! raw text for a string (an enum's literals when it has one) and JSON otherwise, laid out
//! exactly as the dialect's template writes them.

use serde_json::Value;

use crate::output::xml_call::Dialect;

/// Why a schema cannot be enforced in this form.
pub(crate) struct Unenforceable(pub String);

/// The rule body of one call of tool `index`, named `name`, with `schema`; the rules it
/// refers to are added to `helpers`. `strict` refuses what raw text cannot guarantee.
pub(crate) fn call_rule(
    index: usize,
    name: &str,
    schema: &Value,
    strict: bool,
    dialect: &Dialect,
    json_rule: impl Fn(&Value) -> String,
    helpers: &mut Vec<String>,
) -> Result<String, Unenforceable> {
    let layout = dialect.layout;
    let head = quote(&format!("{}{name}{}", layout.name_open, layout.name_close));
    let tail = match layout.tail {
        "" => String::new(),
        tail => format!(" {}", quote(tail)),
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    let Some(properties) = properties.filter(|p| !p.is_empty()) else {
        if closed {
            // No parameters, and none allowed.
            return Ok(format!("{head}{tail}"));
        }
        // No declared parameters: any names, any text.
        helpers.push(format!(
            "xany_{index}: {} /[A-Za-z0-9_.\\-]+/ {} xanyv_{index}",
            quote(layout.key_open),
            quote(layout.key_close)
        ));
        helpers.push(text_rule(&format!("xanyv_{index}"), layout.value_end));
        return Ok(format!("{head} xany_{index}*{tail}"));
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut parts = vec![head];
    for (k, (key, property)) in properties.iter().enumerate() {
        let param = format!("xp_{index}_{k}");
        let value = format!("xv_{index}_{k}");
        helpers.push(format!(
            "{param}: {} {value}",
            quote(&format!("{}{key}{}", layout.key_open, layout.key_close))
        ));
        helpers.push(value_rule(
            &value, key, property, strict, dialect, &json_rule,
        )?);
        parts.push(match required.contains(&key.as_str()) {
            true => param,
            false => format!("{param}?"),
        });
    }
    Ok(format!("{}{tail}", parts.join(" ")))
}

fn value_rule(
    rule: &str,
    key: &str,
    property: &Value,
    strict: bool,
    dialect: &Dialect,
    json_rule: &impl Fn(&Value) -> String,
) -> Result<String, Unenforceable> {
    let end = dialect.layout.value_end;
    if property.get("type").and_then(Value::as_str) != Some("string") {
        return Ok(format!("{rule}: {} {}", json_rule(property), quote(end)));
    }
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        let literals: Vec<String> = options
            .iter()
            .filter_map(Value::as_str)
            .map(quote)
            .collect();
        if !literals.is_empty() {
            return Ok(format!("{rule}: ({}) {}", literals.join(" | "), quote(end)));
        }
    }
    let limited = ["pattern", "format", "minLength", "maxLength", "const"]
        .iter()
        .find(|k| property.get(**k).is_some());
    if let (true, Some(limit)) = (strict, limited) {
        return Err(Unenforceable(format!(
            "properties.{key}.{limit}: a string limit cannot be enforced on the raw text of the {} tool format",
            dialect.name
        )));
    }
    Ok(text_rule(rule, end))
}

/// Free text up to (and including) the value's closing tag.
fn text_rule(rule: &str, end: &str) -> String {
    format!("{rule}[suffix={}]: /(?s:.*)/", quote(end))
}

/// A Lark string literal.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(schema: Value, strict: bool) -> Result<(String, Vec<String>), String> {
        rules_in(schema, strict, &crate::output::xml_call::QWEN)
    }

    fn rules_in(
        schema: Value,
        strict: bool,
        dialect: &Dialect,
    ) -> Result<(String, Vec<String>), String> {
        let mut helpers = Vec::new();
        call_rule(
            0,
            "f",
            &schema,
            strict,
            dialect,
            |s| format!("%json {s}"),
            &mut helpers,
        )
        .map(|body| (body, helpers))
        .map_err(|e| e.0)
    }

    #[test]
    fn parameters_follow_the_schema_required_first_class() {
        let (body, helpers) = rules(
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "mode": {"type": "integer"},
                "kind": {"type": "string", "enum": ["a", "b"]}}, "required": ["path"]}),
            false,
        )
        .unwrap();
        assert_eq!(
            body,
            "\"<function=f>\\n\" xp_0_0 xp_0_1? xp_0_2? \"</function>\""
        );
        assert!(helpers.contains(&"xp_0_0: \"<parameter=path>\\n\" xv_0_0".to_owned()));
        assert!(helpers.contains(&"xv_0_0[suffix=\"\\n</parameter>\\n\"]: /(?s:.*)/".to_owned()));
        assert!(helpers
            .contains(&"xv_0_1: %json {\"type\":\"integer\"} \"\\n</parameter>\\n\"".to_owned()));
        assert!(helpers.contains(&"xv_0_2: (\"a\" | \"b\") \"\\n</parameter>\\n\"".to_owned()));
    }

    #[test]
    fn a_strict_string_limit_is_refused_by_name() {
        let schema =
            json!({"type": "object", "properties": {"code": {"type": "string", "maxLength": 3}}});
        assert!(rules(schema.clone(), false).is_ok());
        let err = rules(schema, true).unwrap_err();
        assert!(err.starts_with("properties.code.maxLength"), "{err}");
    }

    #[test]
    fn glm_calls_are_laid_out_as_its_template_writes_them() {
        let (body, helpers) = rules_in(
            json!({"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}),
            false,
            &crate::output::xml_call::GLM,
        )
        .unwrap();
        assert_eq!(body, "\"f\" xp_0_0 xp_0_1?");
        assert!(helpers
            .contains(&"xp_0_0: \"\\n<arg_key>city</arg_key>\\n<arg_value>\" xv_0_0".to_owned()));
        assert!(helpers.contains(&"xv_0_0[suffix=\"</arg_value>\"]: /(?s:.*)/".to_owned()));
        assert!(
            helpers.contains(&"xv_0_1: %json {\"type\":\"integer\"} \"</arg_value>\"".to_owned())
        );
    }

    #[test]
    fn a_closed_schema_without_properties_takes_no_parameters() {
        let closed = json!({"type": "object", "properties": {}, "additionalProperties": false});
        let (body, helpers) = rules(closed, true).unwrap();
        assert_eq!(body, "\"<function=f>\\n\" \"</function>\"");
        assert!(helpers.is_empty());
        let (open, _) = rules(json!({"type": "object"}), false).unwrap();
        assert!(open.contains("xany_0*"), "{open}");
    }
}
