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

/// Business prose with a little PII, repeated to `target` bytes (cut at a
/// char boundary): one sentence in four carries an e-mail, phone, card, SSN,
/// IP or IBAN, so a scanner sees a realistic hit density. The benchmark and
/// pii-mask's throughput example measure the same text.
pub fn prose_with_pii(target: usize) -> String {
    let prose = "The quarterly report shows steady growth across all regions, with customer satisfaction \
                 up three points and churn down slightly. Please summarise the key risks for the board, \
                 including supply-chain delays, currency exposure and the pending migration to 2.0. ";
    let pii = [
        "Contact jane.doe@example.com for details. ",
        "Call +1 415 555 0132 before Friday. ",
        "Card on file: 4111 1111 1111 1111. ",
        "SSN 123-45-6789 was redacted upstream. ",
        "Server 10.20.30.40 failed at 12:30:45. ",
        "Wire to DE89 3704 0044 0532 0130 00 today. ",
    ];
    let mut text = String::with_capacity(target + 512);
    let mut i = 0;
    while text.len() < target {
        text.push_str(prose);
        if i % 4 == 0 {
            text.push_str(pii.get((i / 4) % pii.len()).copied().unwrap_or_default());
        }
        i += 1;
    }
    text.truncate(target);
    while !text.is_char_boundary(text.len()) {
        text.pop();
    }
    text
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
    fn prose_has_the_requested_size_and_pii() {
        let text = prose_with_pii(10_000);
        assert_eq!(text.len(), 10_000);
        assert!(text.contains("jane.doe@example.com"));
    }

    #[test]
    fn extracts_a_filter_block_from_gateway_yaml() {
        let yaml = "  # BEGIN f configuration\n  configuration:\n    value: |\n      {\n        \"k\": 1\n      }\n  # END f configuration\n";
        assert_eq!(gateway_config(yaml, "f"), "{\n  \"k\": 1\n}\n");
    }
}
