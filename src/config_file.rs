//! `--config FILE`: settings in TOML (top-level `key = value` lines), one key per flag, named as the flag's
//! long name (`max-body = "1MiB"`; `max_body` is accepted too). Precedence: file < environment < flags.
//!
//! The binary applies the file by putting each setting in front of the command line as `--key=value`, except
//! the settings the environment or the command line already give: the flag parser then sees flags first, then
//! the environment, then the file, then defaults. It does so at start and again on SIGHUP. Supported values:
//! strings ("..." with \" \\ \n \t escapes, or '...'), integers, booleans, and arrays of those, on one line or
//! several (joined with commas, as the repeatable flags read them).

use std::collections::BTreeMap;

/// Parses the file's text into (flag long name, value as the flag would read it).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let at = |msg: &str| format!("line {}: {msg}: {raw:?}", n + 1);
        if line.starts_with('[') {
            return Err(at("tables are not supported (use top-level keys)"));
        }
        let (k, v) = line.split_once('=').ok_or_else(|| at("expected key = value"))?;
        let key = k.trim().trim_matches('"').replace('_', "-");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(at("bad key"));
        }
        let mut v = v.trim().to_string();
        // An array may span lines: gather them up to its closing bracket (outside strings).
        if v.starts_with('[') {
            while !closes_array(&v) {
                let (_, more) = lines.next().ok_or_else(|| at("unclosed array"))?;
                v.push(' ');
                v.push_str(strip_comment(more).trim());
            }
        }
        let v = v.as_str();
        let value = if let Some(inner) = v.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| at("nothing may follow an array's closing bracket"))?;
            let items: Result<Vec<String>, String> = split_items(inner)
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| scalar(s.trim()).ok_or_else(|| at("bad array item")))
                .collect();
            items?.join(",")
        } else {
            scalar(v).ok_or_else(|| at("bad value (strings need quotes)"))?
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(at("key given twice"));
        }
    }
    Ok(out)
}

/// True if `s` (starting with `[`) holds the closing `]` outside strings.
fn closes_array(s: &str) -> bool {
    let (mut quote, mut escaped) = (None, false);
    for c in s.chars() {
        match (quote, c) {
            (Some('"'), _) if escaped => escaped = false,
            (Some('"'), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return true,
            _ => {}
        }
    }
    false
}

pub(crate) fn strip_comment(line: &str) -> &str {
    split_unquoted(line, '#')[0]
}

pub(crate) fn split_items(s: &str) -> Vec<&str> {
    split_unquoted(s, ',')
}

/// Splits at `sep` outside quoted strings ("..." with backslash escapes, or '...').
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quote, mut escaped) = (0, None, false);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c == sep => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        escaped = false;
    }
    items.push(&s[start..]);
    items
}

/// A TOML scalar as the flag reads it: a string ("..." with \\n \\t \\" \\\\ escapes, or '...'), an integer or a
/// boolean.
pub(crate) fn scalar(v: &str) -> Option<String> {
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.push(match chars.next()? {
                    'n' => '\n',
                    't' => '\t',
                    '"' => '"',
                    '\\' => '\\',
                    _ => return None,
                });
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Some(s.to_string());
    }
    if v == "true" || v == "false" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'_')) {
        return Some(v.replace('_', ""));
    }
    None
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
