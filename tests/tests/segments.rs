//! A segment (docs/ARCHITECTURE.md, the columnar engine) is plain Parquet:
//! DuckDB reads one as it is, with the types a user expects (a UTC
//! timestamp, text, integers), and finds what the server wrote.

use std::collections::BTreeMap;

use ses_export_core::event_store::conformance::{generated, reference_records};

fn duckdb(sql: &str) -> Option<String> {
    let script = format!(
        "import duckdb\nfor row in duckdb.sql({sql:?}).fetchall():\n    print('|'.join(str(v) for v in row))\n"
    );
    ses_export_tests::python_with("duckdb", "duckdb", &script, b"")
}

#[test]
fn duckdb_reads_a_segment() {
    let mut records = reference_records(&generated(41, 3_000));
    records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("part-1.parquet");
    let file = std::fs::File::create(&path).expect("create");
    ses_export_core::segment::write(&records, file).expect("write");
    let path = path.to_str().expect("path");

    // Rows per ISP, as DuckDB counts them and as the records say.
    let Some(counted) = duckdb(&format!(
        "SELECT isp, count(*) FROM read_parquet('{path}') GROUP BY isp ORDER BY isp"
    )) else {
        return;
    };
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *expected.entry(record.isp.as_str()).or_default() += 1;
    }
    let expected: String = expected.iter().map(|(isp, n)| format!("{isp}|{n}\n")).collect();
    assert_eq!(counted, expected);

    // Types: the send time is a UTC timestamp, flags an integer.
    let described = duckdb(&format!("DESCRIBE SELECT * FROM read_parquet('{path}')")).expect("describe");
    assert!(
        described.contains("send_timestamp|TIMESTAMP WITH TIME ZONE"),
        "{described}"
    );
    assert!(described.contains("flags|USMALLINT"), "{described}");
    assert!(described.contains("subject|VARCHAR"), "{described}");
    let first = duckdb(&format!(
        "SELECT message_id, epoch_ms(send_timestamp) FROM read_parquet('{path}') ORDER BY send_timestamp, message_id, destination LIMIT 1"
    ))
    .expect("first row");
    assert_eq!(
        first,
        format!("{}|{}\n", records[0].message_id, records[0].send_timestamp)
    );
}
