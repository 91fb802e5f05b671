//! The validation messages for invalid request bodies, one case a line:
//! every constraint kind of the model, as AWS words them.

use insta::assert_snapshot;
use ses_export_model::types::{BatchGetMetricDataRequest, CreateExportJobRequest, ListExportJobsRequest};
use ses_export_model::{InputError, parse_input};

#[derive(Clone, Copy)]
enum Op {
    Create,
    List,
    Metrics,
}

fn run(op: Op, body: &str) -> Result<(), InputError> {
    let body = body.as_bytes();
    match op {
        Op::Create => parse_input::<CreateExportJobRequest>(body, &[]).map(drop),
        Op::List => parse_input::<ListExportJobsRequest>(body, &[]).map(drop),
        Op::Metrics => parse_input::<BatchGetMetricDataRequest>(body, &[]).map(drop),
    }
}

/// A valid metrics data source, for cases that break one thing in it.
const METRICS: &str = r#""Namespace": "VDM", "Dimensions": {"ISP": ["*"]}, "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}], "StartDate": 1704067200, "EndDate": 1704153600"#;

fn create_metrics(extra: &str) -> String {
    format!(
        r#"{{"ExportDataSource": {{"MetricsDataSource": {{{METRICS}{extra}}}}}, "ExportDestination": {{"DataFormat": "CSV"}}}}"#
    )
}

fn create_insights(source: &str, destination: &str) -> String {
    format!(
        r#"{{"ExportDataSource": {{"MessageInsightsDataSource": {{"StartDate": 1704067200, "EndDate": 1704153600{source}}}}}, "ExportDestination": {{"DataFormat": "CSV"{destination}}}}}"#
    )
}

fn query(extra: &str) -> String {
    format!(
        r#"{{"Queries": [{{"Id": "q1", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1704067200, "EndDate": 1704153600{extra}}}]}}"#
    )
}

#[test]
fn invalid_bodies() {
    let long_subject = "s".repeat(999);
    let long_email = format!("{}@example.com", "a".repeat(320));
    let eleven_queries = format!(r#"{{"Queries": [{}]}}"#, [r#"{"Id": "q"}"#; 11].join(", "));
    let many_metrics = format!(
        r#", "Metrics": [{}]"#,
        [r#"{"Name": "SEND", "Aggregation": "VOLUME"}"#; 11].join(", ")
    );
    let cases: Vec<(&str, Op, String)> = vec![
        ("not JSON", Op::Create, "{".into()),
        ("not an object", Op::Create, "[]".into()),
        ("missing both required members", Op::Create, "{}".into()),
        ("null required member", Op::Create, r#"{"ExportDataSource": null, "ExportDestination": {"DataFormat": "CSV"}}"#.into()),
        ("missing DataFormat", Op::Create, r#"{"ExportDataSource": {}, "ExportDestination": {}}"#.into()),
        ("bad DataFormat enum", Op::Create, r#"{"ExportDataSource": {}, "ExportDestination": {"DataFormat": "XML"}}"#.into()),
        ("bad namespace enum", Op::Create, create_metrics(r#", "Namespace": "XYZ""#)),
        ("metrics source missing everything", Op::Create, r#"{"ExportDataSource": {"MetricsDataSource": {}}, "ExportDestination": {"DataFormat": "CSV"}}"#.into()),
        ("structure given a string", Op::Create, r#"{"ExportDataSource": "metrics", "ExportDestination": {"DataFormat": "CSV"}}"#.into()),
        ("timestamp given a string", Op::Create, create_insights(r#", "StartDate": "2024-01-01""#, "")),
        ("timestamp out of range", Op::Create, create_insights(r#", "EndDate": 1e300"#, "")),
        ("MaxResults above range", Op::Create, create_insights(r#", "MaxResults": 10001"#, "")),
        ("MaxResults below range", Op::Create, create_insights(r#", "MaxResults": 0"#, "")),
        ("MaxResults a fraction", Op::Create, create_insights(r#", "MaxResults": 10.5"#, "")),
        ("MaxResults beyond 32 bits", Op::Create, create_insights(r#", "MaxResults": 4294967296"#, "")),
        ("too many FromEmailAddress filters", Op::Create, create_insights(r#", "Include": {"FromEmailAddress": ["a", "b", "c", "d", "e", "f"]}"#, "")),
        ("two Subject filters", Op::Create, create_insights(r#", "Exclude": {"Subject": ["a", "b"]}"#, "")),
        ("subject too long (sensitive, redacted)", Op::Create, create_insights(&format!(r#", "Include": {{"Subject": ["{long_subject}"]}}"#), "")),
        ("empty subject", Op::Create, create_insights(r#", "Include": {"Subject": [""]}"#, "")),
        ("email address too long", Op::Create, create_insights(&format!(r#", "Include": {{"Destination": ["{long_email}"]}}"#), "")),
        ("empty tenant name", Op::Create, create_insights(r#", "Include": {"TenantName": [""]}"#, "")),
        ("bad LastDeliveryEvent enum", Op::Create, create_insights(r#", "Include": {"LastDeliveryEvent": ["BOUNCE"]}"#, "")),
        ("too many LastEngagementEvent values", Op::Create, create_insights(r#", "Include": {"LastEngagementEvent": ["OPEN", "CLICK", "OPEN"]}"#, "")),
        ("null inside a list", Op::Create, create_insights(r#", "Include": {"Isp": ["Gmail", null]}"#, "")),
        ("list given a string", Op::Create, create_insights(r#", "Include": {"Isp": "Gmail"}"#, "")),
        ("S3Url pattern mismatch", Op::Create, create_insights("", r#", "S3Url": "https://bucket/key""#)),
        ("S3Url without a key", Op::Create, create_insights("", r#", "S3Url": "s3://bucket/""#)),
        ("too many metrics", Op::Create, create_metrics(&many_metrics)),
        ("no metrics", Op::Create, create_metrics(r#", "Metrics": []"#)),
        ("bad metric name and aggregation", Op::Create, create_metrics(r#", "Metrics": [{"Name": "BOUNCE", "Aggregation": "SUM"}]"#)),
        ("dimension key not in the enum", Op::Create, create_metrics(r#", "Dimensions": {"COUNTRY": ["*"]}"#)),
        ("export dimensions map too large", Op::Create, create_metrics(r#", "Dimensions": {"ISP": ["*"], "EMAIL_IDENTITY": ["a"], "CONFIGURATION_SET": ["b"], "TENANT_NAME": ["c"]}"#)),
        ("empty export dimensions map", Op::Create, create_metrics(r#", "Dimensions": {}"#)),
        ("dimension with no values", Op::Create, create_metrics(r#", "Dimensions": {"ISP": []}"#)),
        ("dimension with eleven values", Op::Create, create_metrics(r#", "Dimensions": {"ISP": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]}"#)),
        ("map given a list", Op::Create, create_metrics(r#", "Dimensions": ["ISP"]"#)),
        ("many violations at once, cheap before patterns", Op::Create, r#"{"ExportDataSource": {"MessageInsightsDataSource": {"MaxResults": -1, "Include": {"Subject": ["a", "b"]}}}, "ExportDestination": {"DataFormat": "csv", "S3Url": "bucket/key"}}"#.into()),
        ("ListExportJobs: bad JobStatus enum", Op::List, r#"{"JobStatus": "DONE"}"#.into()),
        ("ListExportJobs: bad source type and string page size", Op::List, r#"{"ExportSourceType": "METRICS", "PageSize": "10"}"#.into()),
        ("ListExportJobs: token not a string", Op::List, r#"{"NextToken": 12}"#.into()),
        ("BatchGetMetricData: missing Queries", Op::Metrics, "{}".into()),
        ("BatchGetMetricData: empty Queries", Op::Metrics, r#"{"Queries": []}"#.into()),
        ("BatchGetMetricData: eleven queries", Op::Metrics, eleven_queries),
        ("BatchGetMetricData: query missing members", Op::Metrics, r#"{"Queries": [{"Id": "q1"}]}"#.into()),
        ("BatchGetMetricData: empty and over-long Id", Op::Metrics, format!(r#"{{"Queries": [{{"Id": "", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1, "EndDate": 2}}, {{"Id": "{}", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1, "EndDate": 2}}]}}"#, "x".repeat(256))),
        ("BatchGetMetricData: bad metric enum", Op::Metrics, query(r#", "Metric": "OPENS""#)),
        ("BatchGetMetricData: dimension map too large", Op::Metrics, query(r#", "Dimensions": {"ISP": "Gmail", "EMAIL_IDENTITY": "a", "CONFIGURATION_SET": "b", "TENANT_NAME": "c"}"#)),
        ("BatchGetMetricData: dimension value not a string", Op::Metrics, query(r#", "Dimensions": {"ISP": ["Gmail"]}"#)),
        ("BatchGetMetricData: bad dimension key", Op::Metrics, query(r#", "Dimensions": {"isp": "Gmail"}"#)),
    ];
    assert!(cases.len() >= 30);

    let mut report = String::new();
    for (name, op, body) in &cases {
        let message = match run(*op, body) {
            Ok(()) => panic!("case {name:?} was accepted: {body}"),
            Err(e) => e.to_string(),
        };
        report.push_str(&format!("## {name}\n{message}\n\n"));
    }
    assert_snapshot!(report);
}

#[test]
fn unknown_members_are_ignored() {
    let body = create_insights(r#", "Future": {"x": 1}"#, r#", "Encryption": "KMS""#);
    assert!(run(Op::Create, &body).is_ok());
}

#[test]
fn empty_body_is_an_empty_object() {
    assert!(run(Op::List, "").is_ok());
    assert!(run(Op::List, "  \n").is_ok());
}
