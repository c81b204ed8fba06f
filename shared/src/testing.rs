//! Helpers for the filters' tests (feature `testing`): reading the docs and
//! the reference config, so each filter can check that what it documents and
//! ships is what its parser accepts.

#![allow(clippy::panic, clippy::expect_used)]

use std::path::Path;

/// Reads a file relative to a crate's manifest directory; panics with the path.
pub fn read_file(manifest_dir: &str, relative: &str) -> String {
    let path = Path::new(manifest_dir).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The ```json blocks that follow an `<!-- example: config -->` marker.
pub fn readme_config_examples(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("<!-- example: config -->") {
        rest = rest.get(at..).unwrap_or("");
        let start = rest.find("```json\n").expect("a ```json block after the marker") + "```json\n".len();
        let end = rest.get(start..).and_then(|tail| tail.find("```")).expect("closing fence") + start;
        out.push(rest.get(start..end).unwrap_or("").to_string());
        rest = rest.get(end..).unwrap_or("");
    }
    out
}

/// Every ```json block of a Markdown text.
pub fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// A filter's plugin configuration in envoy-config/gateway.yaml: the
/// `value: |` literal between `# BEGIN <filter> configuration` and
/// `# END <filter> configuration`, with its indentation removed.
pub fn gateway_config(gateway_yaml: &str, filter: &str) -> String {
    let begin = gateway_yaml.find(&format!("# BEGIN {filter} configuration")).expect("BEGIN marker");
    let end = gateway_yaml.find(&format!("# END {filter} configuration")).expect("END marker");
    let block = gateway_yaml.get(begin..end).unwrap_or("");
    let value = block.find("value: |").expect("a `value: |` literal block") + "value: |".len();
    let lines: Vec<&str> = block.get(value..).unwrap_or("").lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    let indent = lines.iter().map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    lines.iter().map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_readme_examples_and_json_blocks() {
        let md = "x\n<!-- example: config -->\n```json\n{\"a\": 1}\n```\n```json\n{\"b\": 2}\n```\n";
        assert_eq!(readme_config_examples(md), vec!["{\"a\": 1}\n"]);
        assert_eq!(json_blocks(md), vec!["{\"a\": 1}\n", "{\"b\": 2}\n"]);
    }

    #[test]
    fn extracts_a_filter_block_from_gateway_yaml() {
        let yaml = "  # BEGIN f configuration\n  configuration:\n    value: |\n      {\n        \"k\": 1\n      }\n  # END f configuration\n";
        assert_eq!(gateway_config(yaml, "f"), "{\n  \"k\": 1\n}\n");
    }
}
