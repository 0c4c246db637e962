//! Maps field paths to source positions and back, so every config error can name file, line and
//! field. serde's errors carry a byte span; semantic checks carry a field path. The parsed
//! `toml_edit` document knows both.

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a field path: a key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the config tree, printed as `sites[2].zones[0].polygon`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        Self(v)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }
    /// Parses `a.b[2].c` (used by tests and by callers that build paths as text).
    pub fn parse(s: &str) -> Self {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                out.push(Seg::Key(rest[..i].to_string()));
                rest = &rest[i..];
                while let Some(end) = rest.find(']') {
                    if let Ok(n) = rest[1..end].parse() {
                        out.push(Seg::Index(n));
                    }
                    rest = &rest[end + 1..];
                }
            } else {
                out.push(Seg::Key(rest.to_string()));
            }
        }
        Self(out)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// A parsed document that answers "where is this field" and "which field is here".
pub struct Locator {
    doc: Option<ImDocument<String>>,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        Self {
            doc: ImDocument::parse(text.to_string()).ok(),
        }
    }

    /// Byte span of the field at `path`, or of its nearest ancestor that exists in the file
    /// (a missing field is reported at the table that should hold it).
    pub fn span_of(&self, path: &FieldPath) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let mut best = None;
        let mut node = Node::Table(doc.as_table());
        for seg in &path.0 {
            let next = match (&node, seg) {
                (Node::Table(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, item)| {
                    let span = item_span(item).or_else(|| key.span());
                    (Node::from_item(item), span)
                }),
                (Node::Inline(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, item)| {
                    let span = item_span(item).or_else(|| key.span());
                    (Node::from_item(item), span)
                }),
                (Node::Aot(a), Seg::Index(i)) => a
                    .get(*i)
                    .map(|t| (Node::Table(t), t.span().or_else(|| a.span()))),
                (Node::Array(a), Seg::Index(i)) => {
                    a.get(*i).map(|v| (Node::from_value(v), v.span()))
                }
                _ => None,
            };
            match next {
                Some((n, span)) => {
                    if span.is_some() {
                        best = span;
                    }
                    node = n;
                }
                None => break,
            }
        }
        best.or_else(|| doc.as_table().span())
    }

    /// The deepest field whose key or value covers `offset` (for serde errors, which know only
    /// a span).
    pub fn path_at(&self, offset: usize) -> FieldPath {
        let Some(doc) = self.doc.as_ref() else {
            return FieldPath::root();
        };
        let mut best = FieldPath::root();
        walk_table(doc.as_table(), &FieldPath::root(), offset, &mut best);
        best
    }
}

/// The field at `offset` in a document that does not parse: the table headers above it (with
/// array-of-tables indices counted as TOML counts them) and the key on its line.
pub fn path_in_broken_text(text: &str, offset: usize) -> FieldPath {
    let offset = offset.min(text.len());
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut table: Vec<Seg> = Vec::new();
    let mut line_start = 0;
    for line in text[..offset].split_inclusive('\n') {
        let t = line.trim();
        if line_start + line.len() <= offset && line.ends_with('\n') {
            if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim().to_string();
                // A new element of `a.b` restarts the counts of arrays nested in it.
                let nested = format!("{name}.");
                counts.retain(|k, _| !k.starts_with(&nested));
                let n = counts.entry(name.clone()).or_insert(0);
                *n += 1;
                table = header_path(&name, &counts);
            } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = header_path(name.trim(), &counts);
            }
        }
        line_start += line.len();
    }
    let line_begin = text[..offset].rfind('\n').map_or(0, |p| p + 1);
    let line_text = text[line_begin..].lines().next().unwrap_or("");
    if let Some((key, _)) = line_text.split_once('=') {
        let key = key.trim().trim_matches('"');
        if !key.is_empty() && !key.starts_with('[') {
            for k in key.split('.') {
                table.push(Seg::Key(k.trim().to_string()));
            }
        }
    }
    FieldPath(table)
}

/// `sites.zones` with counts {sites: 2, sites.zones: 3} -> sites[1].zones[2].
fn header_path(name: &str, counts: &std::collections::HashMap<String, usize>) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in name.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part.trim());
        out.push(Seg::Key(part.trim().to_string()));
        if let Some(n) = counts.get(&prefix) {
            out.push(Seg::Index(n.saturating_sub(1)));
        }
    }
    out
}

enum Node<'a> {
    Table(&'a Table),
    Inline(&'a toml_edit::InlineTable),
    Aot(&'a toml_edit::ArrayOfTables),
    Array(&'a toml_edit::Array),
    Leaf,
}

impl<'a> Node<'a> {
    fn from_item(item: &'a Item) -> Self {
        match item {
            Item::Table(t) => Node::Table(t),
            Item::ArrayOfTables(a) => Node::Aot(a),
            Item::Value(v) => Node::from_value(v),
            Item::None => Node::Leaf,
        }
    }
    fn from_value(v: &'a Value) -> Self {
        match v {
            Value::InlineTable(t) => Node::Inline(t),
            Value::Array(a) => Node::Array(a),
            _ => Node::Leaf,
        }
    }
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        other => other.span(),
    }
}

fn covers(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn walk_table(t: &Table, path: &FieldPath, offset: usize, best: &mut FieldPath) {
    for (k, item) in t.iter() {
        let p = path.key(k);
        if let Some((key, _)) = t.get_key_value(k) {
            if covers(key.span(), offset) {
                *best = p.clone();
            }
        }
        walk_item(item, &p, offset, best);
    }
}

fn walk_item(item: &Item, path: &FieldPath, offset: usize, best: &mut FieldPath) {
    match item {
        Item::Table(t) => {
            if covers(t.span(), offset) {
                *best = path.clone();
            }
            walk_table(t, path, offset, best)
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let p = path.index(i);
                if covers(t.span(), offset) {
                    *best = p.clone();
                }
                walk_table(t, &p, offset, best);
            }
        }
        Item::Value(v) => walk_value(v, path, offset, best),
        Item::None => {}
    }
}

fn walk_value(v: &Value, path: &FieldPath, offset: usize, best: &mut FieldPath) {
    if covers(v.span(), offset) && path.0.len() >= best.0.len() {
        *best = path.clone();
    }
    match v {
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                walk_value(e, &path.index(i), offset, best);
            }
        }
        Value::InlineTable(t) => {
            for (k, e) in t.iter() {
                let p = path.key(k);
                if let Some((key, _)) = t.get_key_value(k) {
                    if covers(key.span(), offset) {
                        *best = p.clone();
                    }
                }
                walk_value(e, &p, offset, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[city]\nname = \"x\"\n\n[[sites]]\nid = \"a\"\n\n[[sites]]\nid = \"b\"\npolygon = [[0.1, 0.2], [0.3, 0.4]]\n";

    #[test]
    fn path_round_trip() {
        let p = FieldPath::parse("sites[1].zones[0].polygon");
        assert_eq!(p.to_string(), "sites[1].zones[0].polygon");
        assert_eq!(FieldPath::root().to_string(), "(top level)");
    }

    #[test]
    fn span_of_fields() {
        let loc = Locator::new(DOC);
        let cases = [
            ("city.name", 2),
            ("sites[0].id", 5),
            ("sites[1].id", 8),
            ("sites[1].polygon[1]", 9),
            // missing field: reported at its table
            ("sites[1].zones", 7),
        ];
        for (path, line) in cases {
            let span = loc.span_of(&FieldPath::parse(path)).unwrap();
            assert_eq!(line_col(DOC, span.start).0, line, "{path}");
        }
    }

    #[test]
    fn path_at_offsets() {
        let loc = Locator::new(DOC);
        let off = DOC.find("id = \"b\"").unwrap();
        assert_eq!(loc.path_at(off).to_string(), "sites[1].id");
        let off = DOC.find("0.3").unwrap();
        assert_eq!(loc.path_at(off).to_string(), "sites[1].polygon[1][0]");
    }

    #[test]
    fn path_in_broken_text_cases() {
        let text = "[city]\nname = \"x\n\n[[sites]]\nid = 1\n[[sites.zones]]\nid = 2\n[[sites]]\n[[sites.zones]]\n[[sites.zones]]\nname = \"z\n[sites.tamper]\nx = (\n";
        let at = |needle: &str, nth: usize| {
            let mut off = 0;
            for _ in 0..=nth {
                off = text[off..].find(needle).unwrap() + off + 1;
            }
            path_in_broken_text(text, off - 1).to_string()
        };
        assert_eq!(at("name = \"x", 0), "city.name");
        assert_eq!(at("id = 2", 0), "sites[0].zones[0].id");
        assert_eq!(at("name = \"z", 0), "sites[1].zones[1].name");
        assert_eq!(at("x = (", 0), "sites[1].tamper.x");
        assert_eq!(path_in_broken_text("", 0).to_string(), "(top level)");
    }

    #[test]
    fn line_col_edges() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 3), (2, 1));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }
}
