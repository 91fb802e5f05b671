//! HTTPS end to end (SPEC §10): the server's own `--tls-cert/--tls-key`,
//! driven by `aws-sdk-sesv2` and by the `ses-export` CLI trusting a test
//! CA (`--ca-bundle`, `AWS_CA_BUNDLE`); refused with a sentence about the
//! certificate when the CA is not trusted; download URLs in the scheme the
//! server serves, or `--public-url`.

use std::process::{Command, Output};

use ses_export_tests::{
    Server, TestCa, cli_command, create_export, download, https_client, send_volume_by_isp, wait_for_end,
};

fn cli(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Output {
    cli_command(&server.url)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ses-export")
}

async fn tls_server(ca: &TestCa, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        ca.cert_path.to_str().expect("path"),
        "--tls-key",
        ca.key_path.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

/// A metrics export of one day, run to its end; its download URL.
async fn finished_export_url(client: &aws_sdk_sesv2::Client) -> String {
    let job_id = create_export(
        client,
        send_volume_by_isp(1_704_067_200, 1_704_153_600),
        aws_sdk_sesv2::types::DataFormat::Csv,
    )
    .await;
    let job = wait_for_end(client, &job_id).await;
    assert_eq!(job.job_status().map(|s| s.as_str()), Some("COMPLETED"));
    job.export_destination()
        .and_then(|d| d.s3_url())
        .expect("a download URL")
        .to_owned()
}

#[tokio::test]
async fn https_serves_the_sdk_and_downloads_in_https() {
    let ca = TestCa::new("ses-export test CA");
    let server = tls_server(&ca, &[]).await;
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);

    let client = server.client_trusting(&ca.ca_pem);
    let listed = client
        .list_export_jobs()
        .send()
        .await
        .expect("ListExportJobs over HTTPS");
    assert!(listed.export_jobs().is_empty());

    let url = finished_export_url(&client).await;
    assert!(url.starts_with(&format!("{}/", server.url)), "{url}");
    let fetched = https_client(&[&ca.ca_pem])
        .get(&url)
        .send()
        .await
        .expect("download over HTTPS");
    assert_eq!(fetched.status().as_u16(), 200);
    assert!(fetched.text().await.expect("body").ends_with('\n'), "a CSV file");

    // A client that trusts another CA does not get through, and nothing
    // about the server's answer reaches it.
    let other = TestCa::new("another CA");
    let refused = server.client_trusting(&other.ca_pem).list_export_jobs().send().await;
    assert!(refused.is_err(), "a certificate from an untrusted CA was accepted");
}

#[tokio::test]
async fn the_cli_trusts_a_ca_bundle_and_says_when_the_certificate_is_not_trusted() {
    let ca = TestCa::new("ses-export test CA");
    let server = tls_server(&ca, &[]).await;
    let bundle = ca.ca_path.to_str().expect("path");

    let listed = cli(&server, &["--ca-bundle", bundle, "list-export-jobs"], &[]);
    assert!(
        listed.status.success(),
        "exit {:?}: {}",
        listed.status.code(),
        String::from_utf8_lossy(&listed.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(answer["ExportJobs"], serde_json::json!([]));

    // AWS_CA_BUNDLE, as the AWS CLI reads it.
    let from_env = cli(&server, &["list-export-jobs"], &[("AWS_CA_BUNDLE", bundle)]);
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );

    // Without the CA: refused, and the message is about the certificate,
    // not about a server that is not running.
    let untrusted = cli(&server, &["list-export-jobs"], &[]);
    assert_eq!(untrusted.status.code(), Some(1));
    let message = String::from_utf8_lossy(&untrusted.stderr);
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("--ca-bundle"), "{message}");
    assert!(!message.contains("running there"), "{message}");

    // A bundle that is not PEM is named.
    let junk = ca.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let bad = cli(
        &server,
        &["--ca-bundle", junk.to_str().expect("path"), "list-export-jobs"],
        &[],
    );
    assert_ne!(bad.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("junk.pem"));
}

#[tokio::test]
async fn a_public_url_is_where_downloads_point() {
    let server = Server::start(&["--public-url", "https://exports.example.com/"]).await;
    let url = finished_export_url(&server.client()).await;
    let path = url
        .strip_prefix("https://exports.example.com/_ses-export/v1/exports/")
        .unwrap_or_else(|| panic!("{url}"));
    // Behind the proxy the same path reaches this server.
    let local = format!("{}/_ses-export/v1/exports/{path}", server.url);
    let (status, body) = download(&local).await;
    assert_eq!(status, 200);
    assert!(body.ends_with(b"\n"), "a CSV file");

    // A public URL that is not one is refused at start, with the reason.
    let refused = Command::new(ses_export_tests::server_binary())
        .args(["--listen", "127.0.0.1:0", "--public-url", "exports.example.com"])
        .output()
        .expect("run the server");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--public-url"));
}

#[tokio::test]
async fn bad_tls_files_are_named_at_start() {
    let ca = TestCa::new("ses-export test CA");
    let missing = ca.dir().join("missing.pem");
    let run = |cert: &std::path::Path, key: &std::path::Path| {
        Command::new(ses_export_tests::server_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(ca.dir().join("data"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .expect("run the server")
    };
    let no_cert = run(&missing, &ca.key_path);
    assert_eq!(no_cert.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_cert.stderr).contains("missing.pem"));
    // The CA's certificate with the server's key: they do not belong together.
    let mismatched = run(&ca.ca_path, &ca.key_path);
    assert_eq!(mismatched.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&mismatched.stderr).contains("--tls-cert"));
    // --tls-cert alone is a usage error.
    let alone = Command::new(ses_export_tests::server_binary())
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&ca.cert_path)
        .output()
        .expect("run the server");
    assert_eq!(alone.status.code(), Some(2));
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new("ses-export test CA");
    let server = tls_server(&ca, &["--header-timeout", "1"]).await;
    // A client that connects and never says hello holds its connection for
    // the header timeout, not for ever.
    let mut stalled = tokio::net::TcpStream::connect(server.address()).await.expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read(&mut buffer))
        .await
        .expect("the server closes a silent connection within seconds");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The server still serves everyone else.
    let client = server.client_trusting(&ca.ca_pem);
    client.list_export_jobs().send().await.expect("ListExportJobs");
}
