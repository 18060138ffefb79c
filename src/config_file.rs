//! `--config FILE`: settings in TOML (top-level `key = value` lines), one key per flag, named as the flag's
//! long name (`max-body = "1MiB"`; `max_body` is accepted too). Precedence: file < environment < flags.
//!
//! The binary applies the file by putting each setting in front of the command line as `--key=value`, except
//! the settings the environment or the command line already give: the flag parser then sees flags first, then
//! the environment, then the file, then defaults. It does so at start and again on SIGHUP. Supported values:
//! strings ("..." with \" \\ \n \t escapes, or '...'), integers, booleans, and arrays of those, on one line or
//! several (joined with commas, as the repeatable flags read them).

use std::collections::BTreeMap;

use crate::toml_subset::{self, Value};

/// Parses the file's text into (flag long name, value as the flag would read it).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let tables = toml_subset::parse(text)?;
    if let Some(t) = tables.get(1) {
        return Err(format!(
            "line {}: tables are not supported (use top-level keys): [{}]",
            t.line,
            t.name.as_deref().unwrap_or("")
        ));
    }
    Ok(tables[0]
        .entries
        .iter()
        .map(|e| {
            let value = match &e.value {
                Value::Scalar(s) => s.text.clone(),
                Value::Array(items) => items.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(","),
            };
            (e.key.replace('_', "-"), value)
        })
        .collect())
}

/// The environment variable a flag reads.
pub fn env_name(flag: &str) -> String {
    format!("PORTCULLIS_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        let t = r#"
# portcullis
listen = "0.0.0.0:8080"   # where
max_body = '2MiB'
workers = 4
ratelimit-headers = true
accept = ["application/vnd.a.v1+json", "application/vnd.a.v2+json"]
docs-url = "https://x/#y \"q\""
json-methods = ""
"#;
        let m = parse(t).unwrap();
        assert_eq!(m["listen"], "0.0.0.0:8080");
        assert_eq!(m["max-body"], "2MiB");
        assert_eq!(m["workers"], "4");
        assert_eq!(m["ratelimit-headers"], "true");
        assert_eq!(m["accept"], "application/vnd.a.v1+json,application/vnd.a.v2+json");
        assert_eq!(m["docs-url"], "https://x/#y \"q\"");
        assert_eq!(m["json-methods"], "");
        assert!(parse("[server]\nx = 1").is_err());
        assert!(parse("x = bare").is_err());
        assert!(parse("x = 1\nx = 2").is_err());
        // Arrays over several lines, with comments and a bracket inside a string.
        let m = parse("accept = [\n  \"a/b\",  # one\n  \"c/]d\",\n]\nworkers = 2\n").unwrap();
        assert_eq!((m["accept"].as_str(), m["workers"].as_str()), ("a/b,c/]d", "2"));
        assert!(parse("accept = [\n \"a/b\"\n").is_err());
        assert_eq!(env_name("max-body"), "PORTCULLIS_MAX_BODY");
    }
}
