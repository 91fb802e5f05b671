//! The wire JSON of every request and response shape, built from full
//! example values, and its round trip back through the parser.

use std::collections::BTreeMap;

use insta::assert_snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ses_export_model::operation::{
    BatchGetMetricData, CancelExportJob, CreateExportJob, GetExportJob, GetMessageInsights, ListExportJobs, Operation,
};
use ses_export_model::types::*;
use ses_export_model::{Timestamp, parse_input};

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_secs(secs).expect("in range")
}

/// Snapshots the request's body, then parses it back as the server would,
/// with the URI labels, and expects the same value.
fn check_request<O: Operation>(input: O::Input) -> String
where
    O::Input: PartialEq + std::fmt::Debug,
{
    let body = serde_json::to_string_pretty(&input).expect("serialize");
    let labels = O::labels(&input);
    let path = O::spec().path(&labels);
    let parsed: O::Input = parse_input(body.as_bytes(), &labels).expect("a full example is valid");
    assert_eq!(parsed, input);
    let method = O::spec().method;
    if method == "GET" {
        assert_eq!(body, "{}", "a GET input has only URI members");
        return format!("{method} {path}\n\n(no body)");
    }
    format!("{method} {path}\n\n{body}")
}

/// Snapshots the response's body and expects it to read back unchanged.
fn check_response<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(output: T) -> String {
    let body = serde_json::to_string_pretty(&output).expect("serialize");
    let parsed: T = serde_json::from_str(&body).expect("deserialize");
    assert_eq!(parsed, output);
    body
}

fn message_insights_source() -> MessageInsightsDataSource {
    let filters = |prefix: &str| MessageInsightsFilters {
        from_email_address: Some(vec![format!("{prefix}sender@example.com"), "*@example.org".into()]),
        destination: Some(vec!["*@gmail.com".into()]),
        subject: Some(vec!["Welcome*".into()]),
        isp: Some(vec!["Gmail".into(), "Yahoo".into()]),
        tenant_name: Some(vec!["tenant-a".into()]),
        last_delivery_event: Some(vec![DeliveryEventType::Delivery, DeliveryEventType::PermanentBounce]),
        last_engagement_event: Some(vec![EngagementEventType::Open, EngagementEventType::Click]),
    };
    MessageInsightsDataSource {
        start_date: ts(1_704_067_200),
        end_date: Timestamp::from_secs_f64(1_704_198_615.25).expect("in range"),
        include: Some(filters("")),
        exclude: Some(filters("no-reply-")),
        max_results: Some(100),
    }
}

fn metrics_source() -> MetricsDataSource {
    MetricsDataSource {
        dimensions: BTreeMap::from([
            (MetricDimensionName::EmailIdentity, vec!["example.com".into()]),
            (MetricDimensionName::Isp, vec!["*".into()]),
        ]),
        namespace: MetricNamespace::Vdm,
        metrics: vec![
            ExportMetric {
                name: Some(Metric::Send),
                aggregation: Some(MetricAggregation::Volume),
            },
            ExportMetric {
                name: Some(Metric::DeliveryOpen),
                aggregation: Some(MetricAggregation::Rate),
            },
        ],
        start_date: ts(1_704_067_200),
        end_date: ts(1_704_153_600),
    }
}

#[test]
fn create_export_job_request() {
    let message_insights = CreateExportJobRequest {
        export_data_source: ExportDataSource {
            message_insights_data_source: Some(message_insights_source()),
            metrics_data_source: None,
        },
        export_destination: ExportDestination {
            data_format: DataFormat::Csv,
            s3_url: Some("s3://bucket/exports/".into()),
        },
    };
    assert_snapshot!(
        "create_export_job_request_insights",
        check_request::<CreateExportJob>(message_insights)
    );
    let metrics = CreateExportJobRequest {
        export_data_source: ExportDataSource {
            message_insights_data_source: None,
            metrics_data_source: Some(metrics_source()),
        },
        export_destination: ExportDestination {
            data_format: DataFormat::Json,
            s3_url: None,
        },
    };
    assert_snapshot!(
        "create_export_job_request_metrics",
        check_request::<CreateExportJob>(metrics)
    );
}

#[test]
fn create_export_job_response() {
    let out = CreateExportJobResponse {
        job_id: Some("0f5c1a2e-5b7d-4c1e-9e8a-0123456789ab".into()),
    };
    assert_snapshot!(check_response(out));
}

#[test]
fn get_export_job() {
    let input = GetExportJobRequest { job_id: "a b/c".into() };
    assert_snapshot!("get_export_job_request", check_request::<GetExportJob>(input));
    let out = GetExportJobResponse {
        job_id: Some("0f5c1a2e-5b7d-4c1e-9e8a-0123456789ab".into()),
        export_source_type: Some(ExportSourceType::MessageInsights),
        job_status: Some(JobStatus::Failed),
        export_destination: Some(ExportDestination {
            data_format: DataFormat::Csv,
            s3_url: Some("http://127.0.0.1:4599/_ses-export/v1/exports/x.csv?X-Amz-Signature=abc".into()),
        }),
        export_data_source: Some(ExportDataSource {
            message_insights_data_source: Some(message_insights_source()),
            metrics_data_source: None,
        }),
        created_timestamp: Some(Timestamp::from_millis(1_704_200_000_123).expect("in range")),
        completed_timestamp: Some(ts(1_704_200_060)),
        failure_info: Some(FailureInfo {
            failed_records_s3_url: Some("s3://bucket/failed.csv".into()),
            error_message: Some("The export could not be written.".into()),
        }),
        statistics: Some(ExportStatistics {
            processed_records_count: Some(1200),
            exported_records_count: Some(100),
        }),
    };
    assert_snapshot!("get_export_job_response", check_response(out));
}

#[test]
fn list_export_jobs() {
    let input = ListExportJobsRequest {
        next_token: Some("opaque-token".into()),
        page_size: Some(50),
        export_source_type: Some(ExportSourceType::MetricsData),
        job_status: Some(JobStatus::Completed),
    };
    assert_snapshot!("list_export_jobs_request", check_request::<ListExportJobs>(input));
    let out = ListExportJobsResponse {
        export_jobs: Some(vec![
            ExportJobSummary {
                job_id: Some("job-2".into()),
                export_source_type: Some(ExportSourceType::MetricsData),
                job_status: Some(JobStatus::Completed),
                created_timestamp: Some(ts(1_704_200_000)),
                completed_timestamp: Some(ts(1_704_200_030)),
            },
            ExportJobSummary {
                job_id: Some("job-1".into()),
                export_source_type: Some(ExportSourceType::MessageInsights),
                job_status: Some(JobStatus::Unknown("PAUSED".into())),
                created_timestamp: Some(ts(1_704_100_000)),
                completed_timestamp: None,
            },
        ]),
        next_token: Some("next-opaque-token".into()),
    };
    assert_snapshot!("list_export_jobs_response", check_response(out));
}

#[test]
fn cancel_export_job() {
    let input = CancelExportJobRequest { job_id: "job-1".into() };
    assert_snapshot!("cancel_export_job_request", check_request::<CancelExportJob>(input));
    assert_snapshot!("cancel_export_job_response", check_response(CancelExportJobResponse {}));
}

#[test]
fn get_message_insights() {
    let input = GetMessageInsightsRequest {
        message_id: "0100018c-msg".into(),
    };
    assert_snapshot!(
        "get_message_insights_request",
        check_request::<GetMessageInsights>(input)
    );
    let out = GetMessageInsightsResponse {
        message_id: Some("0100018c-msg".into()),
        from_email_address: Some("sender@example.com".into()),
        subject: Some("Welcome".into()),
        email_tags: Some(vec![
            MessageTag {
                name: "ses:configuration-set".into(),
                value: "marketing".into(),
            },
            MessageTag {
                name: "campaign".into(),
                value: "spring".into(),
            },
        ]),
        insights: Some(vec![EmailInsights {
            destination: Some("someone@gmail.com".into()),
            isp: Some("Gmail".into()),
            events: Some(vec![
                InsightsEvent {
                    timestamp: Some(ts(1_704_067_200)),
                    r#type: Some(EventType::Send),
                    details: None,
                },
                InsightsEvent {
                    timestamp: Some(ts(1_704_067_260)),
                    r#type: Some(EventType::Bounce),
                    details: Some(EventDetails {
                        bounce: Some(Bounce {
                            bounce_type: Some(BounceType::Permanent),
                            bounce_sub_type: Some("General".into()),
                            diagnostic_code: Some("smtp; 550 5.1.1 user unknown".into()),
                        }),
                        complaint: None,
                    }),
                },
                InsightsEvent {
                    timestamp: Some(ts(1_704_067_320)),
                    r#type: Some(EventType::Complaint),
                    details: Some(EventDetails {
                        bounce: None,
                        complaint: Some(Complaint {
                            complaint_sub_type: Some("OnAccountSuppressionList".into()),
                            complaint_feedback_type: Some("abuse".into()),
                        }),
                    }),
                },
            ]),
        }]),
    };
    assert_snapshot!("get_message_insights_response", check_response(out));
}

#[test]
fn batch_get_metric_data() {
    let input = BatchGetMetricDataRequest {
        queries: vec![BatchGetMetricDataQuery {
            id: "q1".into(),
            namespace: MetricNamespace::Vdm,
            metric: Metric::Delivery,
            dimensions: Some(BTreeMap::from([
                (MetricDimensionName::Isp, "Gmail".into()),
                (MetricDimensionName::TenantName, "tenant-a".into()),
            ])),
            start_date: ts(1_704_067_200),
            end_date: ts(1_704_240_000),
        }],
    };
    assert_snapshot!(
        "batch_get_metric_data_request",
        check_request::<BatchGetMetricData>(input)
    );
    let out = BatchGetMetricDataResponse {
        results: Some(vec![MetricDataResult {
            id: Some("q1".into()),
            timestamps: Some(vec![ts(1_704_067_200), ts(1_704_153_600), ts(1_704_240_000)]),
            values: Some(vec![12, 0, 7]),
        }]),
        errors: Some(vec![MetricDataError {
            id: Some("q2".into()),
            code: Some(QueryErrorCode::AccessDenied),
            message: Some("Not allowed.".into()),
        }]),
    };
    assert_snapshot!("batch_get_metric_data_response", check_response(out));
}

/// The bodies AWS's own clients send parse, fractions and all.
#[test]
fn aws_client_bodies_parse() {
    for end_date in ["1704198615", "1704198615.25"] {
        let body = format!(
            r#"{{"ExportDataSource": {{"MessageInsightsDataSource": {{"StartDate": 1704067200, "EndDate": {end_date}, "Include": {{"FromEmailAddress": ["sender@example.com"], "LastDeliveryEvent": ["DELIVERY", "PERMANENT_BOUNCE"]}}, "Exclude": {{"Subject": ["test"]}}, "MaxResults": 100}}}}, "ExportDestination": {{"DataFormat": "CSV"}}}}"#
        );
        let input: CreateExportJobRequest = parse_input(body.as_bytes(), &[]).expect(&body);
        let source = input.export_data_source.message_insights_data_source.expect("insights");
        assert_eq!(source.end_date.as_secs_f64().to_string(), end_date);
        assert_eq!(source.max_results, Some(100));
        // What was sent comes back out unchanged.
        let echoed = serde_json::to_value(&source).expect("serialize");
        assert_eq!(echoed["EndDate"].to_string(), end_date);
        assert_eq!(echoed["StartDate"].to_string(), "1704067200");
    }
}

/// The authentication errors are named as AWS names them, and read back.
#[test]
fn auth_error_names_round_trip() {
    use ses_export_model::AuthErrorCode;
    let names: Vec<&str> = AuthErrorCode::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "MissingAuthenticationTokenException",
            "UnrecognizedClientException",
            "InvalidSignatureException"
        ]
    );
    for code in AuthErrorCode::ALL {
        assert_eq!(AuthErrorCode::from_name(code.name()), Some(code));
        assert_eq!(code.http_status(), 403);
    }
    assert_eq!(AuthErrorCode::from_name("AccessDeniedException"), None);
}
