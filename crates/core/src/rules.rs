//! The rules beyond the model's traits, checked after the model's
//! own and reported the same way: every violation at once, with its member
//! path, in AWS's words.

use std::collections::HashSet;

use ses_export_model::Violation;
use ses_export_model::types::{
    BatchGetMetricDataRequest, CreateExportJobRequest, ListExportJobsRequest, MessageInsightsFilters,
};

use crate::filter::InsightFilter;

/// `PageSize` bounds for `ListExportJobs`.
pub const PAGE_SIZE: (i32, i32) = (1, 1000);

/// The semantic rules of `CreateExportJob`.
pub fn create_export_job(input: &CreateExportJobRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    let source = &input.export_data_source;
    match (&source.metrics_data_source, &source.message_insights_data_source) {
        (Some(metrics), None) => {
            let path = "exportDataSource.metricsDataSource";
            if metrics.start_date > metrics.end_date {
                out.push(later(path, metrics.end_date));
            }
            let starred: Vec<_> = metrics
                .dimensions
                .iter()
                .filter(|(_, values)| values.iter().any(|v| v == "*"))
                .collect();
            for (name, values) in &starred {
                if values.len() > 1 {
                    out.push(Violation::new(
                        format!("{path}.dimensions.{name}"),
                        Some(format!("[{}]", values.join(", "))),
                        "Member must have * as its only value",
                    ));
                }
            }
            if starred.len() > 1 {
                let names: Vec<String> = starred.iter().map(|(n, _)| n.to_string()).collect();
                out.push(Violation::new(
                    format!("{path}.dimensions"),
                    Some(format!("[{}]", names.join(", "))),
                    "At most one dimension may have the value *",
                ));
            } else if starred.len() == 1 {
                for (name, values) in &metrics.dimensions {
                    if !values.iter().any(|v| v == "*") && values.len() != 1 {
                        out.push(Violation::new(
                            format!("{path}.dimensions.{name}"),
                            Some(format!("[{}]", values.join(", "))),
                            "Member must have exactly one value when another dimension is *",
                        ));
                    }
                }
            }
            let mut seen = HashSet::new();
            for (i, metric) in metrics.metrics.iter().enumerate() {
                let member = format!("{path}.metrics.{}.member", i + 1);
                let (Some(name), Some(aggregation)) = (&metric.name, &metric.aggregation) else {
                    if metric.name.is_none() {
                        out.push(Violation::new(
                            format!("{member}.name"),
                            None,
                            "Member must not be null",
                        ));
                    }
                    if metric.aggregation.is_none() {
                        out.push(Violation::new(
                            format!("{member}.aggregation"),
                            None,
                            "Member must not be null",
                        ));
                    }
                    continue;
                };
                if !seen.insert((name.clone(), aggregation.clone())) {
                    out.push(Violation::new(
                        member,
                        Some(format!("{name} {aggregation}")),
                        "Member must not repeat a metric with the same aggregation",
                    ));
                }
            }
        }
        (None, Some(insights)) => {
            let path = "exportDataSource.messageInsightsDataSource";
            if insights.start_date > insights.end_date {
                out.push(later(path, insights.end_date));
            }
            for (name, filters) in [("include", &insights.include), ("exclude", &insights.exclude)] {
                if let Some(filters) = filters {
                    out.extend(filter_violations(&format!("{path}.{name}"), filters));
                }
            }
        }
        (metrics, insights) => {
            let present: Vec<&str> = [
                ("MetricsDataSource", metrics.is_some()),
                ("MessageInsightsDataSource", insights.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, here)| here.then_some(name))
            .collect();
            out.push(Violation::new(
                "exportDataSource",
                Some(format!("[{}]", present.join(", "))),
                "Member must have exactly one of metricsDataSource, messageInsightsDataSource",
            ));
        }
    }
    out
}

fn later(path: &str, end: ses_export_model::Timestamp) -> Violation {
    Violation::new(
        format!("{path}.endDate"),
        Some(end.as_secs_f64().to_string()),
        "Member must not be earlier than startDate",
    )
}

/// Filter values whose wildcards or escapes do not parse.
fn filter_violations(path: &str, filters: &MessageInsightsFilters) -> Vec<Violation> {
    match InsightFilter::parse(filters) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| {
                Violation::new(
                    format!("{path}.{}", e.path),
                    Some("*** Sensitive Data Redacted ***".to_owned()),
                    e.error.to_string(),
                )
            })
            .collect(),
    }
}

/// The semantic rules of `ListExportJobs`.
pub fn list_export_jobs(input: &ListExportJobsRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(size) = input.page_size {
        let (min, max) = PAGE_SIZE;
        if size < min {
            out.push(Violation::new(
                "pageSize",
                Some(size.to_string()),
                format!("Member must have value greater than or equal to {min}"),
            ));
        } else if size > max {
            out.push(Violation::new(
                "pageSize",
                Some(size.to_string()),
                format!("Member must have value less than or equal to {max}"),
            ));
        }
    }
    out
}

/// The semantic rules of `BatchGetMetricData`.
pub fn batch_get_metric_data(input: &BatchGetMetricDataRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (i, query) in input.queries.iter().enumerate() {
        let path = format!("queries.{}.member", i + 1);
        if !ids.insert(query.id.as_str()) {
            out.push(Violation::new(
                format!("{path}.id"),
                Some(query.id.clone()),
                "Member must be unique among the queries",
            ));
        }
        if query.start_date > query.end_date {
            out.push(later(&path, query.end_date));
        } else {
            let days = crate::clock::day_of(crate::clock::Millis::of(query.end_date))
                - crate::clock::day_of(crate::clock::Millis::of(query.start_date))
                + 1;
            if days > MAX_METRIC_DAYS {
                out.push(Violation::new(
                    format!("{path}.endDate"),
                    Some(query.end_date.as_secs_f64().to_string()),
                    format!(
                        "Member must be within {MAX_METRIC_DAYS} days of startDate (the interval spans {days} days)"
                    ),
                ));
            }
        }
    }
    out
}

/// The most days one `BatchGetMetricData` query answers (three years), so
/// an answer's size is bounded before it is built.
pub const MAX_METRIC_DAYS: i64 = 1096;
