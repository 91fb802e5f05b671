//! The CLI in the AWS CLI's habits (SPEC §11): `--query` and `--output
//! text` print what the AWS CLI prints for the same answer (both run here
//! against the same server); `AWS_DEFAULT_OUTPUT` and a profile's `output`;
//! `AWS_ENDPOINT_URL_SESV2` and a profile's `endpoint_url`; the exit codes;
//! shell completions.

use std::process::{Command, Output};

use ses_export_tests::{Server, cli_binary, wait_for_end};

/// `command` with the development credentials and nothing of this
/// machine's AWS settings, for ours and the AWS CLI alike.
fn isolated(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_OUTPUT")
}

fn ours(server_url: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(cli_binary());
    if let Some(url) = server_url {
        command.args(["--endpoint-url", url]);
    }
    isolated(command.args(args))
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_SESV2")
        .envs(env.iter().copied())
        .output()
        .expect("run ses-export")
}

/// The unmodified AWS CLI, or `None` when it is not installed (outside CI).
fn theirs(server_url: &str, args: &[&str]) -> Option<Output> {
    let output = isolated(
        Command::new("aws")
            .args(["--endpoint-url", server_url, "--region", "us-east-1", "sesv2"])
            .args(args),
    )
    .output();
    match output {
        Ok(output) => Some(output),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "the AWS CLI is needed in CI");
            eprintln!("skipping the comparison: the AWS CLI is not installed");
            None
        }
    }
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const METRICS_SOURCE: &str = r#"{"MetricsDataSource": {"Dimensions": {"ISP": ["*"]}, "Namespace": "VDM", "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}], "StartDate": "2024-01-01T00:00:00Z", "EndDate": "2024-01-02T00:00:00Z"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_text_print_what_the_aws_cli_prints() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let client = server.client();
    // Three jobs: two run to COMPLETED, a cancel tried on the third (it may
    // have completed already).
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = ours(
            Some(&server.url),
            &[
                "--output",
                "json",
                "create-export-job",
                "--export-data-source",
                METRICS_SOURCE,
                "--export-destination",
                r#"{"DataFormat": "CSV"}"#,
            ],
            &[],
        );
        let answer: serde_json::Value = serde_json::from_str(&stdout(&created)).expect("JSON");
        ids.push(answer["JobId"].as_str().expect("JobId").to_owned());
    }
    for id in &ids[..2] {
        wait_for_end(&client, id).await;
    }
    let _ = client.cancel_export_job().job_id(&ids[2]).send().await;
    wait_for_end(&client, &ids[2]).await;

    let cases: &[&[&str]] = &[
        &[
            "list-export-jobs",
            "--query",
            "ExportJobs[?JobStatus==`COMPLETED`].JobId",
            "--output",
            "text",
        ],
        &[
            "list-export-jobs",
            "--query",
            "ExportJobs[].[JobId, JobStatus, ExportSourceType]",
            "--output",
            "text",
        ],
        &["list-export-jobs", "--query", "length(ExportJobs)", "--output", "text"],
        &[
            "list-export-jobs",
            "--query",
            "ExportJobs[?JobStatus==`COMPLETED`].JobId",
            "--output",
            "json",
        ],
        &[
            "list-export-jobs",
            "--query",
            "ExportJobs[0].{id: JobId, status: JobStatus}",
            "--output",
            "json",
        ],
        &[
            "get-export-job",
            "--job-id",
            &ids[0],
            "--query",
            "[JobStatus, ExportSourceType]",
            "--output",
            "text",
        ],
        &[
            "get-export-job",
            "--job-id",
            &ids[0],
            "--query",
            "Statistics",
            "--output",
            "text",
        ],
    ];
    for args in cases {
        let mine = stdout(&ours(Some(&server.url), args, &[]));
        let Some(aws) = theirs(&server.url, args) else { return };
        assert_eq!(mine, stdout(&aws), "ses-export {}", args.join(" "));
    }
    // The first case is the one the issue names: the ids, tab-separated.
    let completed = stdout(&ours(Some(&server.url), cases[0], &[]));
    assert!(completed.trim_end().split('\t').count() >= 2, "{completed}");
    assert!(
        completed.contains(&ids[0]) && completed.contains(&ids[1]),
        "{completed}"
    );

    // A query that is not JMESPath is a usage error, named.
    let bad = ours(Some(&server.url), &["list-export-jobs", "--query", "ExportJobs[?"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--query"));
}

#[tokio::test]
async fn output_and_endpoint_come_from_the_environment_and_the_profile() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[default]\noutput = text\n\n[profile local]\nendpoint_url = {}\noutput = json\n",
            server.url
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("path");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[local]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .expect("write");
    let credentials = credentials.to_str().expect("path");
    let query = ["list-export-jobs", "--query", "length(ExportJobs)"];

    // The default is json, as the AWS CLI's.
    assert_eq!(stdout(&ours(Some(&server.url), &query, &[])), "0\n");
    let listed = stdout(&ours(Some(&server.url), &["list-export-jobs"], &[]));
    assert!(listed.starts_with("{\n    \"ExportJobs\": []"), "{listed}");
    // AWS_DEFAULT_OUTPUT; --output wins over it.
    let text = ours(
        Some(&server.url),
        &["list-export-jobs"],
        &[("AWS_DEFAULT_OUTPUT", "text")],
    );
    assert_eq!(stdout(&text), "");
    let table = ours(
        Some(&server.url),
        &["--output", "table", "list-export-jobs"],
        &[("AWS_DEFAULT_OUTPUT", "text")],
    );
    let table = stdout(&table);
    assert!(table.starts_with("Field") && table.contains("ExportJobs"), "{table}");
    let wrong = ours(
        Some(&server.url),
        &["list-export-jobs"],
        &[("AWS_DEFAULT_OUTPUT", "yml")],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("AWS_DEFAULT_OUTPUT"));

    // The profile's output (text prints nothing for an empty list; json does).
    let from_profile = ours(Some(&server.url), &["list-export-jobs"], &[("AWS_CONFIG_FILE", config)]);
    assert_eq!(stdout(&from_profile), "");
    // AWS_ENDPOINT_URL_SESV2 and the profile's endpoint_url, without --endpoint-url.
    let by_env = ours(None, &query, &[("AWS_ENDPOINT_URL_SESV2", &server.url)]);
    assert_eq!(stdout(&by_env), "0\n");
    let by_profile = ours(
        None,
        &["--profile", "local", "list-export-jobs"],
        &[
            ("AWS_CONFIG_FILE", config),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials),
        ],
    );
    assert!(
        stdout(&by_profile).contains("\"ExportJobs\""),
        "the profile's endpoint and output"
    );
    // AWS_ENDPOINT_URL_SESV2 wins over AWS_ENDPOINT_URL.
    let both = ours(
        None,
        &query,
        &[
            ("AWS_ENDPOINT_URL_SESV2", &server.url),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(stdout(&both), "0\n");
}

#[tokio::test]
async fn exit_codes_say_what_happened() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let good = ses_export_tests::generated_lines(5, 3);
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, &good).expect("write");
    let file = file.to_str().expect("path");
    assert_eq!(ours(Some(&server.url), &["ingest", file], &[]).status.code(), Some(0));
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(&mixed, format!("{good}not an event\n")).expect("write");
    let rejected = ours(Some(&server.url), &["ingest", mixed.to_str().expect("path")], &[]);
    assert_eq!(
        rejected.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&rejected.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&rejected.stdout).expect("the summary is printed");
    assert_eq!(answer["rejected"], 1);
    assert_eq!(
        ours(Some(&server.url), &["get-export-job"], &[]).status.code(),
        Some(2),
        "usage"
    );
    assert_eq!(
        ours(Some(&server.url), &["get-export-job", "--job-id", "nope"], &[])
            .status
            .code(),
        Some(1),
        "a service error"
    );
}

#[test]
fn completions_for_every_shell() {
    for (shell, expected) in [
        ("bash", "complete -F _ses__export"),
        ("zsh", "#compdef ses-export"),
        ("fish", "complete -c ses-export"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = ours(None, &["completion", shell], &[]);
        let script = stdout(&output);
        assert!(
            script.contains(expected),
            "{shell}: {}",
            &script[..script.len().min(200)]
        );
        assert!(script.contains("list-export-jobs"), "{shell}");
    }
}

#[tokio::test]
async fn a_credential_process_profile_signs_requests_the_server_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::with_credentials(
        "[[credentials]]\naccess_key_id = \"AKIAPROCESS\"\nsecret_access_key = \"secret-from-a-process\"\naccount_id = \"123456789012\"\n",
        &["--rate-limits", "off"],
    )
    .await;
    // The process prints credentials as AWS documents it (Version 1).
    let script = dir.path().join("credentials.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '{\"Version\": 1, \"AccessKeyId\": \"AKIAPROCESS\", \"SecretAccessKey\": \"secret-from-a-process\"}'\n",
    )
    .expect("write");
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile proc]\nregion = eu-west-1\ncredential_process = sh {}\n",
            script.display()
        ),
    )
    .expect("write");
    for how in [&["--profile", "proc"][..], &[][..]] {
        let mut command = Command::new(cli_binary());
        command
            .args(["--endpoint-url", &server.url])
            .args(how)
            .args(["list-export-jobs", "--query", "length(ExportJobs)"])
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_DEFAULT_OUTPUT")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION");
        if how.is_empty() {
            command.env("AWS_PROFILE", "proc");
        } else {
            // An explicit --profile wins over keys in the environment.
            command
                .env("AWS_ACCESS_KEY_ID", "AKIAWRONG")
                .env("AWS_SECRET_ACCESS_KEY", "wrong");
        }
        let output = command.output().expect("run ses-export");
        assert_eq!(stdout(&output), "0\n", "{how:?}");
    }
}
