//! The `ses-export` binary against the real server: every command, a
//! profile from a shared-credentials file, and the exit codes.

use crate::expectations;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ses_export_tests::{Server, cli_binary, cli_command};

/// Runs `ses-export` with the development credential (unless `env` says
/// otherwise) against `server`, with JSON output.
fn run(server: &Server, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut command = cli_command(&server.url);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        if v.is_empty() {
            command.env_remove(k);
        } else {
            command.env(k, v);
        }
    }
    let mut child = command.spawn().expect("run ses-export");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("ses-export output")
}

fn ok(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const SEED: &[&str] = &[
    "seed",
    "--messages",
    "120",
    "--start",
    "2024-01-01",
    "--days",
    "3",
    "--seed",
    "8",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_ingest_create_wait_download() {
    // Default rate limits: `wait` must never show a 429 and still finish promptly.
    let server = Server::start(&[]).await;
    let seeded = run(&server, SEED, &[], None);
    assert!(seeded.status.success());
    let lines = String::from_utf8(seeded.stdout.clone()).expect("UTF-8");
    let report = ok(&run(&server, &["ingest", "-"], &[], Some(&seeded.stdout)));
    assert_eq!(report["accepted"], lines.lines().count() as u64);
    assert_eq!(report["rejected"], 0);

    let created = ok(&run(
        &server,
        &[
            "create-export-job",
            "--export-data-source",
            r#"{"MessageInsightsDataSource": {"StartDate": "2024-01-01", "EndDate": "2024-01-05T00:00:00Z", "MaxResults": 10000}}"#,
            "--export-destination",
            r#"{"DataFormat": "CSV"}"#,
        ],
        &[],
        None,
    ));
    let job = created["JobId"].as_str().expect("JobId").to_owned();
    // Spend this second's GetExportJob token, so `wait` meets a throttle at once.
    ok(&run(&server, &["get-export-job", "--job-id", &job], &[], None));
    let started = std::time::Instant::now();
    let waited = run(&server, &["wait", "--job-id", &job], &[], None);
    let waited_json = ok(&waited);
    assert_eq!(waited_json["JobStatus"], "COMPLETED");
    assert!(!stderr(&waited).contains("TooManyRequests"), "{}", stderr(&waited));
    assert!(started.elapsed().as_secs() < 15, "wait took {:?}", started.elapsed());

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("export.csv");
    // A link planted where the download stages its file is not written
    // through: the file it points at is left as it was.
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").expect("victim");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, dir.path().join(".export.csv.partial")).expect("plant a link");
    let downloaded = ok(&run(
        &server,
        &["download", "--job-id", &job, "--out", path.to_str().expect("path")],
        &[],
        None,
    ));
    assert!(downloaded["Bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
    assert!(!std::fs::symlink_metadata(&path).expect("the file").is_symlink());
    let csv = std::fs::read_to_string(&path).expect("the file");
    let expected = expectations::rows(&lines);
    assert_eq!(csv.lines().count(), expected.len() + 1);
    for (got, want) in csv.lines().skip(1).zip(&expected) {
        assert_eq!(got, want.csv());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_the_exit_codes() {
    let server = Server::start(&[
        "--rate-limits",
        "off",
        "--min-job-duration-ms",
        "60000",
        "--workers",
        "1",
    ])
    .await;
    let sent = ok(&run(
        &server,
        &[
            "seed",
            "--messages",
            "40",
            "--start",
            "2024-01-01",
            "--days",
            "2",
            "--send",
        ],
        &[],
        None,
    ));
    assert!(sent["accepted"].as_u64().unwrap_or(0) > 40);

    let metrics = ok(&run(
        &server,
        &[
            "batch-get-metric-data",
            "--queries",
            r#"[{"Id": "q", "Namespace": "VDM", "Metric": "SEND", "StartDate": "2024-01-01", "EndDate": "2024-01-02"}]"#,
        ],
        &[],
        None,
    ));
    assert_eq!(metrics["Results"][0]["Values"].as_array().map(Vec::len), Some(2));

    let listed = ok(&run(&server, &["list-export-jobs"], &[], None));
    assert_eq!(listed["ExportJobs"].as_array().map(Vec::len), Some(0));
    let input = r#"{"ExportDataSource": {"MetricsDataSource": {"Dimensions": {"ISP": ["*"]}, "Namespace": "VDM", "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}], "StartDate": 1704067200, "EndDate": 1704240000}}, "ExportDestination": {"DataFormat": "JSON"}}"#;
    let created = ok(&run(
        &server,
        &["create-export-job", "--cli-input-json", input],
        &[],
        None,
    ));
    let job = created["JobId"].as_str().expect("JobId").to_owned();
    let got = ok(&run(&server, &["get-export-job", "--job-id", &job], &[], None));
    assert_eq!(got["ExportSourceType"], "METRICS_DATA");
    let too_early = run(&server, &["download", "--job-id", &job], &[], None);
    assert_eq!(too_early.status.code(), Some(1));
    assert!(
        stderr(&too_early).contains("run `ses-export wait"),
        "{}",
        stderr(&too_early)
    );

    ok(&run(&server, &["cancel-export-job", "--job-id", &job], &[], None));
    let waited = run(&server, &["wait", "--job-id", &job], &[], None);
    assert_eq!(waited.status.code(), Some(3), "a cancelled job: {}", stderr(&waited));
    assert!(stderr(&waited).contains("ended CANCELLED"));

    let missing = run(&server, &["get-export-job", "--job-id", "nope"], &[], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("NotFoundException"));
    // The server validates; the message is the server's.
    let invalid = run(
        &server,
        &[
            "create-export-job",
            "--export-data-source",
            r#"{"MetricsDataSource": {"Namespace": "XYZ", "Dimensions": {"ISP": ["*"]}, "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}], "StartDate": 1, "EndDate": 2}}"#,
            "--export-destination",
            r#"{"DataFormat": "CSV"}"#,
        ],
        &[],
        None,
    );
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        stderr(&invalid).contains("BadRequestException: 1 validation error detected: Value 'XYZ'"),
        "{}",
        stderr(&invalid)
    );
    // A missing required member is caught before sending, as the AWS CLI does.
    let incomplete = run(
        &server,
        &[
            "create-export-job",
            "--export-data-source",
            r#"{"MetricsDataSource": {"Namespace": "VDM"}}"#,
            "--export-destination",
            r#"{"DataFormat": "CSV"}"#,
        ],
        &[],
        None,
    );
    assert_eq!(incomplete.status.code(), Some(1));
    assert!(
        stderr(&incomplete).contains("missing field `Dimensions`"),
        "{}",
        stderr(&incomplete)
    );
    let usage = run(&server, &["get-export-job"], &[], None);
    assert_eq!(usage.status.code(), Some(2), "a usage error");

    // The same stream, written out: its first record's message was sent above.
    let stream = run(
        &server,
        &["seed", "--messages", "40", "--start", "2024-01-01", "--days", "2"],
        &[],
        None,
    );
    let first = stream.stdout.split(|b| *b == b'\n').next().unwrap_or_default();
    let first: serde_json::Value = serde_json::from_slice(first).expect("a record");
    let message = first["mail"]["messageId"].as_str().expect("id");
    let insights = ok(&run(
        &server,
        &["get-message-insights", "--message-id", message],
        &[],
        None,
    ));
    assert_eq!(insights["MessageId"], message);

    let unreachable = Command::new(cli_binary())
        .args(["--endpoint-url", "http://127.0.0.1:9", "list-export-jobs"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(stderr(&unreachable).contains("is ses-export-server running there?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_profile_in_the_shared_files() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::with_credentials(
        "[[credentials]]\naccess_key_id = \"AKIAPROFILE\"\nsecret_access_key = \"profile-secret\"\naccount_id = \"333333333333\"\n",
        &["--rate-limits", "off"],
    )
    .await;
    let shared = dir.path().join("credentials");
    std::fs::write(
        &shared,
        "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n[team]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .expect("write");
    let shared = shared.to_str().expect("path");
    let env = [
        ("AWS_SHARED_CREDENTIALS_FILE", shared),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
    ];
    ok(&run(&server, &["--profile", "team", "list-export-jobs"], &env, None));
    let with_profile_env = [
        ("AWS_SHARED_CREDENTIALS_FILE", shared),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_PROFILE", "team"),
    ];
    ok(&run(&server, &["list-export-jobs"], &with_profile_env, None));
    let default_profile = run(&server, &["list-export-jobs"], &env, None);
    assert_eq!(default_profile.status.code(), Some(1));
    assert!(stderr(&default_profile).contains("UnrecognizedClientException"));
    assert!(stderr(&default_profile).contains("check AWS_ACCESS_KEY_ID"));
    let no_credentials = run(&server, &["--profile", "absent", "list-export-jobs"], &env, None);
    assert_eq!(no_credentials.status.code(), Some(1));
    assert!(
        stderr(&no_credentials).contains("no credentials"),
        "{}",
        stderr(&no_credentials)
    );
}
