//! Template text: parsed once at configure time, rendered per request.
//!
//! A template is never a JSON document with holes in it. It is a list of
//! messages, each a fixed role and a text with `{{variable}}` placeholders.
//! Rendering produces plain strings, which the filter puts into the request as
//! JSON string *values* through serde_json. A value can therefore contain
//! quotes, braces, newlines or `"role":"system"` and still end up as text
//! inside the message it was meant for: it cannot close its string, add a
//! message or change a role.
//!
//! Syntax:
//! - `{{name}}` or `{{ name }}` inserts a variable. Names are ASCII letters,
//!   digits and `_`, starting with a letter or `_`.
//! - `\{{` is a literal `{{`. Any other `{{` that does not start a valid
//!   placeholder is a configuration error, so a typo such as `{{ na me }}` is
//!   caught when the configuration loads rather than sent to the model.
//! - Substitution is one pass: a value that itself contains `{{other}}` is
//!   inserted literally and never expanded, so client text cannot pull in
//!   platform variables or retrieved passages.

use aigw_shared::api::ApiShape;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The role of a configured message. `developer` is OpenAI's newer name for
/// system instructions; for Anthropic both become the top-level `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Whether the role carries instructions (a system prompt).
    pub fn is_system(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

/// A configured message: a fixed role and a template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate {
    pub role: Role,
    pub content: TemplateText,
}

/// A message after rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub role: Role,
    pub text: String,
}

/// Renders configured messages with one request's values.
pub fn render_messages(messages: &[MessageTemplate], values: &Values) -> Vec<Rendered> {
    messages.iter().map(|m| Rendered { role: m.role, text: m.content.render(values) }).collect()
}

/// A parsed template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateText {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
}

/// Variable values for one request, by name.
pub type Values = HashMap<String, String>;

/// Whether `name` is a valid variable name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        _ => return false,
    }
    name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl TemplateText {
    /// Parses a template text. The error says what is wrong and where (byte
    /// offset), without quoting more of the text than the bad placeholder.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let (before, after_open) = (rest.get(..open).unwrap_or(""), rest.get(open + 2..).unwrap_or(""));
            if let Some(escaped) = before.strip_suffix('\\') {
                literal.push_str(escaped);
                literal.push_str("{{");
                offset += open + 2;
                rest = after_open;
                continue;
            }
            literal.push_str(before);
            let Some(close) = after_open.find("}}") else {
                return Err(format!(
                    "unclosed placeholder at byte {}: `{{{{` without `}}}}` (write `\\{{{{` for a literal `{{{{`)",
                    offset + open
                ));
            };
            let inner = after_open.get(..close).unwrap_or("");
            let name = inner.trim();
            if !is_valid_name(name) {
                let shown: String = inner.chars().take(40).collect();
                return Err(format!(
                    "invalid placeholder `{{{{{shown}}}}}` at byte {}: a variable name is letters, digits and `_` (write `\\{{{{` for a literal `{{{{`)",
                    offset + open
                ));
            }
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Variable(name.to_string()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = rest.get(consumed..).unwrap_or("");
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(TemplateText { segments })
    }

    /// The variables the text uses, in order of first use, each once.
    pub fn variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Variable(name) = segment {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Whether the text uses the variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.segments.iter().any(|segment| matches!(segment, Segment::Variable(v) if v == name))
    }

    /// Renders the text. Every variable was checked against the declared ones
    /// when the configuration loaded; one missing here renders as empty.
    pub fn render(&self, values: &Values) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Variable(name) => {
                    if let Some(value) = values.get(name) {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }
}

/// A chat message as JSON: `{"role": …, "content": "…"}`.
pub fn message_value(role: &str, text: &str) -> Value {
    json!({ "role": role, "content": text })
}

/// Puts a rendered template into a request body in place of the client's
/// `template` and `variables`. OpenAI: the messages become `messages`.
/// Anthropic: system and developer messages become the top-level `system`
/// (joined by a blank line, in order), the others `messages`. Responses: the
/// same with `instructions` and `input`. The caller has checked that the
/// client sent none of the fields the template provides.
pub fn apply_template(shape: ApiShape, body: &mut Map<String, Value>, rendered: &[Rendered]) {
    body.remove("template");
    body.remove("variables");
    match shape {
        ApiShape::OpenAiChat => {
            let messages = rendered.iter().map(|m| message_value(m.role.as_str(), &m.text)).collect();
            body.insert("messages".to_string(), Value::Array(messages));
        }
        ApiShape::AnthropicMessages | ApiShape::OpenAiResponses => {
            let (system_field, messages_field) =
                if shape == ApiShape::OpenAiResponses { ("instructions", "input") } else { ("system", "messages") };
            let system: Vec<&str> = rendered.iter().filter(|m| m.role.is_system()).map(|m| m.text.as_str()).collect();
            if !system.is_empty() {
                body.insert(system_field.to_string(), Value::String(system.join("\n\n")));
            }
            let messages = rendered
                .iter()
                .filter(|m| !m.role.is_system())
                .map(|m| message_value(m.role.as_str(), &m.text))
                .collect();
            body.insert(messages_field.to_string(), Value::Array(messages));
        }
        // Not conversations: the request path never gets here (see request.rs).
        ApiShape::OpenAiEmbeddings | ApiShape::OpenAiCompletions => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn renders_variables_with_and_without_spaces() {
        let text = TemplateText::parse("Hello {{name}}, team {{ team }}!").unwrap();
        assert_eq!(text.variables(), vec!["name", "team"]);
        assert_eq!(text.render(&values(&[("name", "Ada"), ("team", "retail")])), "Hello Ada, team retail!");
    }

    #[test]
    fn plain_text_and_lone_braces_are_literal() {
        let text = TemplateText::parse("a } b }} c { d").unwrap();
        assert!(text.variables().is_empty());
        assert_eq!(text.render(&Values::new()), "a } b }} c { d");
    }

    #[test]
    fn escaped_open_is_literal() {
        let text = TemplateText::parse(r"use \{{name}} in Jinja, you are {{name}}").unwrap();
        assert_eq!(text.variables(), vec!["name"]);
        assert_eq!(text.render(&values(&[("name", "X")])), "use {{name}} in Jinja, you are X");
    }

    #[test]
    fn repeated_variable_listed_once() {
        let text = TemplateText::parse("{{a}}{{a}}{{b}}").unwrap();
        assert_eq!(text.variables(), vec!["a", "b"]);
        assert!(text.uses("b"));
        assert!(!text.uses("c"));
        assert_eq!(text.render(&values(&[("a", "1"), ("b", "2")])), "112");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let text = TemplateText::parse("{{a}} / {{b}}").unwrap();
        let out = text.render(&values(&[("a", "{{b}}"), ("b", "secret")]));
        assert_eq!(out, "{{b}} / secret");
    }

    #[test]
    fn bad_placeholders_are_errors() {
        let err = TemplateText::parse("hi {{ na me }}").unwrap_err();
        assert!(err.contains("invalid placeholder `{{ na me }}` at byte 3"), "{err}");
        let err = TemplateText::parse("x {{name").unwrap_err();
        assert!(err.contains("unclosed placeholder at byte 2"), "{err}");
        assert!(TemplateText::parse("{{1abc}}").is_err());
        assert!(TemplateText::parse("{{}}").is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_name("text"));
        assert!(is_valid_name("_x9"));
        assert!(!is_valid_name("9x"));
        assert!(!is_valid_name("a-b"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(65)));
    }

    #[test]
    fn unicode_around_placeholders() {
        let text = TemplateText::parse("é{{x}}ü").unwrap();
        assert_eq!(text.render(&values(&[("x", "→")])), "é→ü");
    }
}

#[cfg(test)]
mod apply_tests {
    use super::*;
    use serde_json::json;

    fn rendered() -> Vec<Rendered> {
        vec![
            Rendered { role: Role::System, text: "Analyse the sentiment.".into() },
            Rendered { role: Role::Developer, text: "One French word.".into() },
            Rendered { role: Role::User, text: "I love it".into() },
        ]
    }

    #[test]
    fn openai_template_becomes_messages_and_keeps_other_fields() {
        let mut body =
            json!({"template": "t", "variables": {"a": "b"}, "model": "m", "stream": true, "temperature": 0.2});
        let map = body.as_object_mut().unwrap();
        apply_template(ApiShape::OpenAiChat, map, &rendered());
        assert_eq!(
            body,
            json!({"model": "m", "stream": true, "temperature": 0.2, "messages": [
                {"role": "system", "content": "Analyse the sentiment."},
                {"role": "developer", "content": "One French word."},
                {"role": "user", "content": "I love it"}
            ]})
        );
    }

    #[test]
    fn anthropic_template_moves_system_to_top_level() {
        let mut body = json!({"template": "t", "model": "claude", "max_tokens": 5});
        apply_template(ApiShape::AnthropicMessages, body.as_object_mut().unwrap(), &rendered());
        assert_eq!(
            body,
            json!({"model": "claude", "max_tokens": 5,
                   "system": "Analyse the sentiment.\n\nOne French word.",
                   "messages": [{"role": "user", "content": "I love it"}]})
        );
    }
}
