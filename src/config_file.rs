//! `--config FILE`: settings in TOML (top-level `key = value` lines), one key per flag, named as the flag's
//! long name (`max-body = "1MiB"`; `max_body` is accepted too), plus two kinds of tables for the upstream
//! pools: `[upstreams.NAME]` (`servers`, `balance`, `health`) and `[[routes]]` (`version`, `prefix`, `pool`).
//! Precedence: file < environment < flags.
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
    let mut out: BTreeMap<String, String> = tables[0]
        .entries
        .iter()
        .map(|e| (e.key.replace('_', "-"), flat(&e.value)))
        .collect();
    // `[upstreams.NAME]` (servers, balance, health) and `[[routes]]` (version, prefix, pool) become the
    // values of the flags that say the same: `upstream`, `balance`, `health`, `route`.
    let mut append = |key: &str, item: String| {
        let v = out.entry(key.to_string()).or_default();
        if !v.is_empty() {
            v.push(',');
        }
        v.push_str(&item);
    };
    for t in &tables[1..] {
        let name = t.name.as_deref().unwrap_or("");
        let get = |k: &str| {
            t.entries
                .iter()
                .find(|e| e.key.replace('_', "-") == k)
                .map(|e| flat(&e.value))
        };
        let unknown = |allowed: &[&str]| {
            t.entries
                .iter()
                .find(|e| !allowed.contains(&e.key.replace('_', "-").as_str()))
                .map(|e| {
                    format!(
                        "line {}: [{name}] has no setting {:?} (it takes {})",
                        e.line,
                        e.key,
                        allowed.join(", ")
                    )
                })
        };
        if let Some(pool) = name.strip_prefix("upstreams.") {
            if let Some(e) = unknown(&["servers", "balance", "health"]) {
                return Err(e);
            }
            let servers = get("servers")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("line {}: [{name}] needs servers = [\"host:port\", ...]", t.line))?;
            append("upstream", format!("{pool}={servers}"));
            if let Some(b) = get("balance") {
                append("balance", format!("{pool}={b}"));
            }
            if let Some(h) = get("health") {
                append("health", format!("{pool}={h}"));
            }
        } else if name == "[routes]" {
            if let Some(e) = unknown(&["version", "prefix", "pool"]) {
                return Err(e);
            }
            let pool = get("pool").ok_or_else(|| format!("line {}: [[routes]] needs pool = \"NAME\"", t.line))?;
            let mut items = Vec::new();
            if let Some(v) = get("version") {
                items.push(format!("version:{v}"));
            }
            if let Some(p) = get("prefix") {
                items.push(format!("prefix:{p}"));
            }
            items.push(pool);
            append("route", items.join(","));
        } else {
            return Err(format!(
                "line {}: [{name}]: the only tables are [upstreams.NAME] and [[routes]] (other settings are \
                 top-level keys)",
                t.line
            ));
        }
    }
    Ok(out)
}

/// The settings `text`'s `[upstreams.NAME]` and `[[routes]]` tables feed (`upstream`, `balance`, `health`,
/// `route`): the binary refuses them given a second time by the environment or the command line, which
/// would otherwise replace the tables' pools silently.
pub fn table_settings(text: &str) -> Vec<&'static str> {
    let Ok(tables) = toml_subset::parse(text) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for t in &tables[1..] {
        let name = t.name.as_deref().unwrap_or("");
        let has = |k: &str| t.entries.iter().any(|e| e.key.replace('_', "-") == k);
        if name.starts_with("upstreams.") {
            keys.push("upstream");
            if has("balance") {
                keys.push("balance");
            }
            if has("health") {
                keys.push("health");
            }
        } else if name == "[routes]" {
            keys.push("route");
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A value as the flag reads it (an array: its items joined with commas).
fn flat(v: &Value) -> String {
    match v {
        Value::Scalar(s) => s.text.clone(),
        Value::Array(items) => items.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(","),
    }
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

    #[test]
    fn upstream_and_route_tables() {
        let t = r#"
upstream = ["10.0.0.5:8080"]
[upstreams.backend-v2]
servers = ["10.0.1.5:8080", "10.0.1.6:8080@2"]
balance = "hash"
health = "/healthz"
[upstreams.billing]
servers = ["10.0.2.5:8080"]
[[routes]]
version = "v2"
pool = "backend-v2"
[[routes]]
version = "v2"
prefix = "/billing/"
pool = "billing"
"#;
        let m = parse(t).unwrap();
        assert_eq!(
            m["upstream"],
            "10.0.0.5:8080,backend-v2=10.0.1.5:8080,10.0.1.6:8080@2,billing=10.0.2.5:8080"
        );
        assert_eq!(m["balance"], "backend-v2=hash");
        assert_eq!(m["health"], "backend-v2=/healthz");
        assert_eq!(m["route"], "version:v2,backend-v2,version:v2,prefix:/billing/,billing");
        assert!(parse("[upstreams.a]\nbalance = \"p2c\"\n")
            .unwrap_err()
            .contains("needs servers"));
        assert!(parse("[upstreams.a]\nservers = [\"x:1\"]\nweight = 2\n")
            .unwrap_err()
            .contains("no setting"));
        assert!(parse("[[routes]]\nversion = \"v2\"\n")
            .unwrap_err()
            .contains("needs pool"));
        assert!(parse("[server]\nx = 1\n").unwrap_err().contains("the only tables"));
    }
}
