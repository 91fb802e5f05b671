//! Snapshots of every command's `--help`, and of table and JSON output for
//! fixed answers.

use std::process::Command;

use ses_export_cli::output::{Format, Output, render};

const COMMANDS: &[&str] = &[
    "create-export-job",
    "get-export-job",
    "list-export-jobs",
    "cancel-export-job",
    "wait",
    "download",
    "ingest",
    "seed",
    "get-message-insights",
    "batch-get-metric-data",
    "completion",
];

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ses-export"))
        .args(args)
        .arg("--help")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run ses-export");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn every_help() {
    insta::assert_snapshot!("ses-export", help(&[]));
    for command in COMMANDS {
        insta::assert_snapshot!(*command, help(&[command]));
    }
}

/// SPEC §11: every flag has help text and every command an example, and
/// every command is in the snapshots above; read from the parser itself,
/// so a command or flag added later is held to it too.
#[test]
fn every_flag_has_help_and_every_command_an_example() {
    use clap::CommandFactory;
    let cli = ses_export_cli::Cli::command();
    let mut missing = Vec::new();
    for arg in cli.get_arguments() {
        if arg.get_help().is_none() && !arg.is_hide_set() {
            missing.push(format!("ses-export --{}: no help", arg.get_id()));
        }
    }
    for command in cli.get_subcommands() {
        let name = command.get_name();
        if !COMMANDS.contains(&name) {
            missing.push(format!("{name}: not in the help snapshots"));
        }
        if !command
            .get_after_help()
            .is_some_and(|h| h.to_string().contains("Example"))
        {
            missing.push(format!("{name}: no example"));
        }
        for arg in command.get_arguments() {
            if arg.get_help().is_none() && !arg.is_hide_set() {
                missing.push(format!("{name} {}: no help", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn outputs_for_fixed_answers() {
    let job = serde_json::json!({
        "JobId": "0f5c1a2e-5b7d-4c1e-9e8a-0123456789ab",
        "ExportSourceType": "METRICS_DATA",
        "JobStatus": "COMPLETED",
        "ExportDestination": {"DataFormat": "CSV", "S3Url": "s3://bucket/prefix/x.csv"},
        "ExportDataSource": {"MetricsDataSource": {"Dimensions": {"ISP": ["*"]}, "Namespace": "VDM",
            "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}], "StartDate": 1704067200, "EndDate": 1704153600.5}},
        "CreatedTimestamp": 1704200000.123,
        "CompletedTimestamp": 1704200001,
        "Statistics": {"ProcessedRecordsCount": 1200, "ExportedRecordsCount": 3}
    });
    let list = serde_json::json!({"ExportJobs": [
        {"JobId": "job-2", "ExportSourceType": "METRICS_DATA", "JobStatus": "PROCESSING", "CreatedTimestamp": 1704200000},
        {"JobId": "job-1", "ExportSourceType": "MESSAGE_INSIGHTS", "JobStatus": "COMPLETED", "CreatedTimestamp": 1704100000, "CompletedTimestamp": 1704100005}
    ]});
    let metrics = serde_json::json!({"Results": [{"Id": "q1", "Timestamps": [1704067200, 1704153600], "Values": [12, 0]}], "Errors": []});
    let mut out = String::new();
    for (name, value) in [
        ("get-export-job", &job),
        ("list-export-jobs", &list),
        ("batch-get-metric-data", &metrics),
    ] {
        out.push_str(&format!("## {name} --output table\n{}\n", render(value, Format::Table)));
        out.push_str(&format!("## {name} --output json\n{}\n", render(value, Format::Json)));
        out.push_str(&format!("## {name} --output text\n{}\n", render(value, Format::Text)));
    }
    insta::assert_snapshot!(out);
}

/// `--query` results, in text and JSON, for the same fixed answers
/// (compared with the AWS CLI itself in `tests/it/cli_habits.rs`).
#[test]
fn query_results() {
    let list = serde_json::json!({"ExportJobs": [
        {"JobId": "job-3", "ExportSourceType": "MESSAGE_INSIGHTS", "JobStatus": "COMPLETED", "CreatedTimestamp": 1704300000},
        {"JobId": "job-2", "ExportSourceType": "METRICS_DATA", "JobStatus": "PROCESSING", "CreatedTimestamp": 1704200000},
        {"JobId": "job-1", "ExportSourceType": "MESSAGE_INSIGHTS", "JobStatus": "COMPLETED", "CreatedTimestamp": 1704100000}
    ]});
    let mut out = String::new();
    for query in [
        "ExportJobs[?JobStatus==`COMPLETED`].JobId",
        "ExportJobs[?JobStatus=='PROCESSING'] | [0].JobId",
        "ExportJobs[].[JobId, JobStatus]",
        "ExportJobs[].{Id: JobId, Type: ExportSourceType}",
        "length(ExportJobs)",
        "ExportJobs[?JobStatus==`FAILED`]",
    ] {
        for format in [Format::Text, Format::Json] {
            let output = Output::new(format, Some(query)).expect("a query");
            out.push_str(&format!("## --query \"{query}\" --output {format:?}\n"));
            out.push_str(&output.render(&list).expect("rendered"));
            out.push('\n');
        }
    }
    insta::assert_snapshot!(out);
}
