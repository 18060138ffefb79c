//! The TOML subset both settings files are written in (`--config` and `--limits`): `key = value` lines,
//! `[table]` headers, `#` comments; values are strings ("..." with \\" \\\\ \\n \\t escapes, or '...'), integers,
//! booleans, and arrays of those, on one line or several. A key given twice in one table, or a table given twice,
//! is an error naming both lines: a later copy must never silently win.
//!
//! Pure: text in, tables out. Each file's own rules (which tables, which keys) are its reader's.

/// One scalar as written: its text as a flag reads it (quotes removed, escapes applied), and whether it was
/// a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    pub quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Scalar(Scalar),
    Array(Vec<Scalar>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    /// 1-based.
    pub line: usize,
}

/// A table: the top level (`name: None`) or `[name]`.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: Option<String>,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// Parses `text` into its tables (the top level first, always present).
pub fn parse(text: &str) -> Result<Vec<Table>, String> {
    let mut tables = vec![Table {
        name: None,
        line: 0,
        entries: Vec::new(),
    }];
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let at = |msg: &str| format!("line {}: {msg}: {raw:?}", n + 1);
        if let Some(h) = line.strip_prefix('[') {
            let name = h
                .strip_suffix(']')
                .ok_or_else(|| at("expected [table]"))?
                .trim()
                .replace('"', "");
            // `[[name]]` (an array of tables: one more element each time) is named `[name]` and may repeat.
            let array = name.starts_with('[') && name.ends_with(']');
            if let Some(first) = tables
                .iter()
                .find(|t| !array && t.name.as_deref() == Some(name.as_str()))
            {
                return Err(at(&format!("[{name}] given twice (first on line {})", first.line)));
            }
            tables.push(Table {
                name: Some(name),
                line: n + 1,
                entries: Vec::new(),
            });
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| at("expected key = value"))?;
        let key = k.trim().trim_matches('"').to_string();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(at("bad key"));
        }
        let mut v = v.trim().to_string();
        // An array may span lines: gather them up to its closing bracket (outside strings).
        if v.starts_with('[') {
            // One pass over each piece (a limits file may list 100 000 users in one array).
            let mut scan = ArrayScan::default();
            let mut closed = scan.feed(&v);
            while !closed {
                let (_, more) = lines.next().ok_or_else(|| at("unclosed array"))?;
                let more = strip_comment(more).trim();
                v.push(' ');
                v.push_str(more);
                closed = scan.feed(more);
            }
        }
        let value = if let Some(inner) = v.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| at("nothing may follow an array's closing bracket"))?;
            let items: Result<Vec<Scalar>, String> = split_unquoted(inner, ',')
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| scalar(s.trim()).ok_or_else(|| at("bad array item")))
                .collect();
            Value::Array(items?)
        } else {
            Value::Scalar(scalar(&v).ok_or_else(|| at("bad value (strings need quotes)"))?)
        };
        let table = tables.last_mut().unwrap();
        let norm = |k: &str| k.replace('_', "-");
        if let Some(first) = table.entries.iter().find(|e| norm(&e.key) == norm(&key)) {
            return Err(at(&format!("{key} given twice (first on line {})", first.line)));
        }
        table.entries.push(Entry {
            key,
            value,
            line: n + 1,
        });
    }
    Ok(tables)
}

/// Looks for an array's closing bracket outside strings, one piece of text at a time.
#[derive(Default)]
struct ArrayScan {
    quote: Option<char>,
    escaped: bool,
}

impl ArrayScan {
    /// Whether `text` holds the closing bracket.
    fn feed(&mut self, text: &str) -> bool {
        for c in text.chars() {
            match (self.quote, c) {
                (Some('"'), _) if self.escaped => self.escaped = false,
                (Some('"'), '\\') => self.escaped = true,
                (Some(q), c) if c == q => self.quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => self.quote = Some(c),
                (None, ']') => return true,
                _ => {}
            }
        }
        false
    }
}

fn strip_comment(line: &str) -> &str {
    split_unquoted(line, '#')[0]
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
fn scalar(v: &str) -> Option<Scalar> {
    let quoted = v.starts_with(['"', '\'']);
    scalar_text(v).map(|text| Scalar { text, quoted })
}

fn scalar_text(v: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_keys_and_duplicates() {
        let t = parse("a = 1\n[x.y]\nb = \"s\" # c\nc = [\n  'p',\n  \"q]\", # r\n]\n[z]\nb = true\n").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].name.as_deref(), Some("x.y"));
        assert_eq!(
            t[1].entries[0].value,
            Value::Scalar(Scalar {
                text: "s".into(),
                quoted: true
            })
        );
        let Value::Array(items) = &t[1].entries[1].value else {
            panic!()
        };
        assert_eq!(items.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["p", "q]"]);
        assert_eq!(t[1].entries[1].line, 4);
        let e = parse("[a]\nrate = 1\nrate = 2\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("first on line 2"), "{e}");
        assert!(parse("max_body = 1\nmax-body = 2\n").is_err(), "spellings of one key");
        assert!(parse("[a]\n[a]\n").unwrap_err().contains("first on line 1"));
        assert!(parse("a = [1,\n2").is_err());
        assert!(parse("a = bare").is_err());
    }
}
