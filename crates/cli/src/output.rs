//! Printing answers as the AWS CLI prints them: JSON (the default), its
//! tab-separated `text`, or a table a person can read; `--query` (JMESPath)
//! applied first, as the AWS CLI applies it.

use serde_json::Value;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Pretty JSON, as the AWS CLI prints it.
    Json,
    /// Columns for people.
    Table,
    /// The AWS CLI's tab-separated text, for scripts.
    Text,
}

impl std::str::FromStr for Format {
    type Err = OutputError;

    /// `json`, `table` or `text`, as `AWS_DEFAULT_OUTPUT` and a profile's
    /// `output` say it (the AWS CLI's `yaml` forms are not offered).
    fn from_str(text: &str) -> Result<Self, OutputError> {
        match text.trim() {
            "json" => Ok(Format::Json),
            "table" => Ok(Format::Table),
            "text" => Ok(Format::Text),
            other => Err(OutputError::new(format!("output {other:?} is not json, table or text"))),
        }
    }
}

/// An output setting the CLI cannot use (`--query`, `AWS_DEFAULT_OUTPUT`, a
/// profile's `output`), or a `--query` that fails on an answer; the
/// JMESPath error beneath it is its `source()`.
#[derive(Debug)]
pub struct OutputError {
    context: String,
    source: Option<Box<jmespath::JmespathError>>,
}

impl OutputError {
    fn new(context: String) -> Self {
        OutputError { context, source: None }
    }

    fn query(context: String, source: jmespath::JmespathError) -> Self {
        OutputError {
            context,
            source: Some(Box::new(source)),
        }
    }

    /// The same error, said of `setting` (where the value came from).
    pub(crate) fn of(mut self, setting: &str) -> Self {
        self.context = format!("{setting}: {}", self.context);
        self
    }
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The answer as text, ending in a newline.
pub fn render(value: &Value, format: Format) -> String {
    match format {
        Format::Json => json(value),
        Format::Table => table(value),
        Format::Text => text(value),
    }
}

/// How to print: the format, and a JMESPath query to apply first.
#[derive(Debug)]
pub struct Output {
    /// How answers are printed.
    pub format: Format,
    /// The compiled `--query`.
    pub query: Option<jmespath::Expression<'static>>,
}

impl Output {
    /// `query` compiled; its error names the expression.
    pub fn new(format: Format, query: Option<&str>) -> Result<Output, OutputError> {
        let query = query
            .map(|q| {
                jmespath::compile(&legacy_literals(q))
                    .map_err(|e| OutputError::query(format!("--query {q:?} is not JMESPath"), e))
            })
            .transpose()?;
        Ok(Output { format, query })
    }

    /// The answer, queried, as text.
    pub fn render(&self, value: &Value) -> Result<String, OutputError> {
        let Some(query) = &self.query else {
            return Ok(render(value, self.format));
        };
        let found = query
            .search(value)
            .map_err(|e| OutputError::query("--query".to_owned(), e))?;
        let found = serde_json::to_value(&*found).map_err(|e| OutputError::new(format!("--query: {e}")))?;
        Ok(render(&found, self.format))
    }
}

/// A backtick literal that is not JSON read as a string, as the AWS CLI's
/// JMESPath (jmespath.py) reads it: `` `COMPLETED` `` is `` `"COMPLETED"` ``.
/// Raw string literals (`'...'`) are left alone.
fn legacy_literals(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    if c == '\\' {
                        if let Some(next) = chars.next() {
                            out.push(next);
                        }
                    } else if c == '\'' {
                        break;
                    }
                }
            }
            '`' => {
                let mut literal = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '\\' && chars.peek() == Some(&'`') {
                        literal.push('`');
                        chars.next();
                    } else if c == '`' {
                        closed = true;
                        break;
                    } else {
                        literal.push(c);
                    }
                }
                let json = if !closed || serde_json::from_str::<Value>(literal.trim()).is_ok() {
                    literal.replace('`', "\\`")
                } else {
                    serde_json::to_string(&literal).unwrap_or_default().replace('`', "\\`")
                };
                out.push('`');
                out.push_str(&json);
                if closed {
                    out.push('`');
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The AWS CLI's `text` output (awscli's `text.format_text`): a scalar on
/// its own line; a list of scalars on one line, tab-separated (each under
/// its parent's name, upper-cased, when nested); an object's scalar values
/// on one line in key order, then its nested lists and objects; the
/// objects of a list share the columns of all their scalar keys. `null`
/// prints `None` and booleans `True`/`False`, as Python prints them.
pub fn text(value: &Value) -> String {
    let mut out = String::new();
    text_item(value, None, None, &mut out);
    out
}

fn python_str(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn text_item(value: &Value, identifier: Option<&str>, scalar_keys: Option<&[String]>, out: &mut String) {
    match value {
        Value::Object(map) => text_object(map, identifier, scalar_keys, out),
        Value::Array(items) => text_list(items, identifier, out),
        scalar => {
            out.push_str(&python_str(scalar));
            out.push('\n');
        }
    }
}

fn text_list(items: &[Value], identifier: Option<&str>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(Value::is_object) {
        let mut keys: Vec<String> = items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter().filter(|(_, v)| is_scalar(v)).map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        for item in items {
            text_item(item, identifier, Some(&keys), out);
        }
    } else if items.iter().any(Value::is_array) {
        let scalars: Vec<&Value> = items.iter().filter(|v| is_scalar(v)).collect();
        if !scalars.is_empty() {
            text_scalars(&scalars, identifier, out);
        }
        for item in items.iter().filter(|v| !is_scalar(v)) {
            text_item(item, identifier, None, out);
        }
    } else {
        text_scalars(&items.iter().collect::<Vec<_>>(), identifier, out);
    }
}

fn text_scalars(items: &[&Value], identifier: Option<&str>, out: &mut String) {
    match identifier {
        Some(name) => {
            for item in items {
                out.push_str(&format!("{}\t{}\n", name.to_uppercase(), python_str(item)));
            }
        }
        None => {
            let line: Vec<String> = items.iter().map(|v| python_str(v)).collect();
            out.push_str(&line.join("\t"));
            out.push('\n');
        }
    }
}

fn text_object(
    map: &serde_json::Map<String, Value>,
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
    out: &mut String,
) {
    let mut scalars: Vec<String> = Vec::new();
    let mut nested: Vec<(&str, &Value)> = Vec::new();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    match scalar_keys {
        None => {
            for key in keys {
                let value = &map[key];
                if is_scalar(value) {
                    scalars.push(python_str(value));
                } else {
                    nested.push((key, value));
                }
            }
        }
        Some(columns) => {
            for column in columns {
                scalars.push(map.get(column).map(python_str).unwrap_or_default());
            }
            for key in keys.into_iter().filter(|k| !columns.contains(k)) {
                nested.push((key, &map[key]));
            }
        }
    }
    if !scalars.is_empty() {
        if let Some(name) = identifier {
            scalars.insert(0, name.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (key, value) in nested {
        text_item(value, Some(key), None, out);
    }
}

/// Pretty JSON with four-space indents, as the AWS CLI prints.
pub fn json(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    let _ = serde::Serialize::serialize(value, &mut serializer);
    String::from_utf8_lossy(&out).into_owned() + "\n"
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// Flattens nested objects into `A.B.C` keys.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        Value::Number(n) if prefix.ends_with("Timestamp") || prefix.ends_with("Date") => {
            // People read times, not epoch seconds.
            let millis = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            out.push((
                prefix.to_owned(),
                ses_export_core::clock::format_iso8601(ses_export_core::clock::Millis(millis)),
            ));
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

fn grid(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A table: an answer's list of records (`ExportJobs`, `Results`, ...) as
/// columns, and everything else as key/value rows.
pub fn table(value: &Value) -> String {
    let Value::Object(map) = value else {
        return scalar(value) + "\n";
    };
    let mut out = String::new();
    let mut pairs = Vec::new();
    for (key, v) in map {
        match v {
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                let mut columns: Vec<String> = Vec::new();
                let mut rows: Vec<Vec<(String, String)>> = Vec::new();
                for item in items {
                    let mut flat = Vec::new();
                    flatten("", item, &mut flat);
                    for (k, _) in &flat {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                    rows.push(flat);
                }
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        columns
                            .iter()
                            .map(|c| {
                                row.iter()
                                    .find(|(k, _)| k == c)
                                    .map(|(_, v)| v.clone())
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .collect();
                out.push_str(&format!("{key}\n"));
                out.push_str(&grid(&columns, &cells));
                out.push('\n');
            }
            other => flatten(key, other, &mut pairs),
        }
    }
    if !pairs.is_empty() {
        let rows: Vec<Vec<String>> = pairs.into_iter().map(|(k, v)| vec![k, v]).collect();
        let table = grid(&["Field".to_owned(), "Value".to_owned()], &rows);
        out = table + if out.is_empty() { "" } else { "\n" } + &out;
    }
    if out.is_empty() {
        out.push_str("(empty)\n");
    }
    out
}
