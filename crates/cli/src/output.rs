//! Printing answers: the wire JSON as the AWS CLI prints it, or a table a
//! person can read.

use serde_json::Value;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// The answer as text, ending in a newline.
pub fn render(value: &Value, format: Format) -> String {
    match format {
        Format::Json => json(value),
        Format::Table => table(value),
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
            out.push((prefix.to_owned(), ses_export_core::clock::format_iso8601(millis)));
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
