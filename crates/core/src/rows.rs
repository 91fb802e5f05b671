//! Export files: the rows of a message-insights or metrics
//! selection written as CSV (RFC 4180, header row, LF line ends, empty
//! cells for absent values) or JSON Lines (the same names, `null` for
//! absent values), UTF-8, times in ISO 8601 UTC with milliseconds.

use ses_export_model::types::{DataFormat, MetricDimensionName};

use crate::clock::format_iso8601;
use crate::insight::InsightRecord;
use crate::query::{MetricValue, MetricsQuery, MetricsRow};

/// The message-insights columns, in order.
pub const INSIGHT_COLUMNS: [&str; 11] = [
    "MESSAGE_ID",
    "SEND_TIMESTAMP",
    "FROM_EMAIL_ADDRESS",
    "DESTINATION",
    "SUBJECT",
    "ISP",
    "EMAIL_IDENTITY",
    "CONFIGURATION_SET",
    "TENANT_NAME",
    "LAST_DELIVERY_EVENT",
    "LAST_ENGAGEMENT_EVENT",
];

/// One cell: text, a number, or nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A string: quoted in CSV as needed, a JSON string.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A rate or other fraction.
    Decimal(f64),
    /// No value: an empty CSV field, JSON `null`.
    Absent,
}

/// Writes rows in one of the export formats.
#[derive(Debug)]
pub struct RowWriter {
    format: DataFormat,
    columns: Vec<String>,
}

impl RowWriter {
    /// A writer for `columns`; `JSON` means JSON Lines, anything else CSV.
    pub fn new(format: DataFormat, columns: Vec<String>) -> Self {
        RowWriter { format, columns }
    }

    /// The file's extension: `csv` or `json`.
    pub fn extension(&self) -> &'static str {
        match self.format {
            DataFormat::Json => "json",
            _ => "csv",
        }
    }

    /// What the file starts with: the CSV header row, or nothing.
    pub fn header(&self) -> String {
        match self.format {
            DataFormat::Json => String::new(),
            _ => {
                let cells: Vec<String> = self.columns.iter().map(|c| csv_field(c)).collect();
                cells.join(",") + "\n"
            }
        }
    }

    /// One row, with its line end.
    pub fn row(&self, cells: &[Cell]) -> String {
        match self.format {
            DataFormat::Json => {
                let mut out = String::from("{");
                for (i, (name, cell)) in self.columns.iter().zip(cells).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&json_string(name));
                    out.push(':');
                    match cell {
                        Cell::Text(s) => out.push_str(&json_string(s)),
                        Cell::Integer(n) => out.push_str(&n.to_string()),
                        Cell::Decimal(x) => out.push_str(&serde_json::Value::from(*x).to_string()),
                        Cell::Absent => out.push_str("null"),
                    }
                }
                out.push_str("}\n");
                out
            }
            _ => {
                let fields: Vec<String> = cells
                    .iter()
                    .map(|cell| match cell {
                        Cell::Text(s) => csv_field(s),
                        Cell::Integer(n) => n.to_string(),
                        Cell::Decimal(x) => serde_json::Value::from(*x).to_string(),
                        Cell::Absent => String::new(),
                    })
                    .collect();
                fields.join(",") + "\n"
            }
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A CSV field per RFC 4180: quoted when it holds a comma, a quote or a
/// line break, quotes doubled.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn text(value: &Option<String>) -> Cell {
    value.clone().map_or(Cell::Absent, Cell::Text)
}

/// A message-insights row.
pub fn insight_cells(record: &InsightRecord) -> Vec<Cell> {
    vec![
        Cell::Text(record.message_id.clone()),
        Cell::Text(format_iso8601(record.send_timestamp)),
        text(&record.from_email_address),
        Cell::Text(record.destination.clone()),
        text(&record.subject),
        Cell::Text(record.isp.clone()),
        text(&record.email_identity),
        text(&record.configuration_set),
        text(&record.tenant_name),
        record
            .last_delivery_event()
            .map_or(Cell::Absent, |e| Cell::Text(e.to_string())),
        record
            .last_engagement_event()
            .map_or(Cell::Absent, |e| Cell::Text(e.to_string())),
    ]
}

/// The metrics columns of `query`: its dimensions (in the order the query
/// lists them, which [`crate::service`] makes EMAIL_IDENTITY,
/// CONFIGURATION_SET, ISP, TENANT_NAME), then `<METRIC>_<AGGREGATION>`.
pub fn metric_columns(query: &MetricsQuery) -> Vec<String> {
    let dims = query.dimensions.iter().map(|(name, _)| match name {
        MetricDimensionName::Unknown(other) => other.clone(),
        known => known.to_string(),
    });
    let metrics = query.metrics.iter().map(|(m, a)| format!("{m}_{a}"));
    dims.chain(metrics).collect()
}

/// A metrics row.
pub fn metric_cells(row: &MetricsRow) -> Vec<Cell> {
    let dims = row.dimension_values.iter().map(|v| {
        if v.is_empty() {
            Cell::Absent
        } else {
            Cell::Text(v.clone())
        }
    });
    let values = row.values.iter().map(|v| match v {
        MetricValue::Volume(n) => Cell::Integer(*n),
        MetricValue::Rate(Some(x)) => Cell::Decimal(*x),
        MetricValue::Rate(None) => Cell::Absent,
    });
    dims.chain(values).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_rfc_4180_needs() {
        let cases = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("é ü 日本", "é ü 日本"),
        ];
        for (input, expected) in cases {
            assert_eq!(csv_field(input), expected);
        }
    }

    #[test]
    fn rows_in_both_formats() {
        let columns = vec!["A".to_owned(), "B".to_owned(), "C".to_owned(), "D".to_owned()];
        let cells = [
            Cell::Text("x,\"y\"".into()),
            Cell::Integer(3),
            Cell::Decimal(0.25),
            Cell::Absent,
        ];
        let csv = RowWriter::new(DataFormat::Csv, columns.clone());
        assert_eq!(csv.header(), "A,B,C,D\n");
        assert_eq!(csv.row(&cells), "\"x,\"\"y\"\"\",3,0.25,\n");
        let json = RowWriter::new(DataFormat::Json, columns);
        assert_eq!(json.header(), "");
        assert_eq!(
            json.row(&cells),
            "{\"A\":\"x,\\\"y\\\"\",\"B\":3,\"C\":0.25,\"D\":null}\n"
        );
    }
}
