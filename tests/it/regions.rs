//! Regions as AWS keeps them (SPEC §13): two regional SDK clients of one
//! account against one server see two separate worlds — jobs, message
//! insights, metrics, limits and page tokens — and an event is kept in the
//! region its `sourceArn` names, whatever request carried it. On SQLite
//! and on PostgreSQL + S3.

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{DataFormat, Metric};
use ses_export_tests::{DEV, Server, create_export, metric_total, send_volume_by_isp};

const INGEST: &str = "/_ses-export/v1/events";
/// 2024-01-01T00:00:00Z, in seconds.
const T0: i64 = 1_704_067_200;

/// A Send record of `message_id`, with `mail.sourceArn` in `region` when
/// given.
fn send(message_id: &str, region: Option<&str>) -> String {
    let mut record = serde_json::json!({
        "eventType": "Send",
        "mail": {
            "timestamp": "2024-01-01T10:00:00.000Z",
            "messageId": message_id,
            "source": "news@example.com",
            "destination": ["ana@gmail.com"],
        },
        "send": {},
    });
    if let Some(region) = region {
        record["mail"]["sourceArn"] = format!("arn:aws:ses:{region}:000000000000:identity/example.com").into();
    }
    record.to_string() + "\n"
}

async fn sends(client: &aws_sdk_sesv2::Client) -> i64 {
    metric_total(client, Metric::Send, T0, T0 + 86_400).await
}

/// GetMessageInsights under AWS's rate (one a second per account and
/// region): a throttled call waits its turn.
async fn insights(
    client: &aws_sdk_sesv2::Client,
    id: &str,
) -> Result<
    aws_sdk_sesv2::operation::get_message_insights::GetMessageInsightsOutput,
    aws_sdk_sesv2::error::SdkError<aws_sdk_sesv2::operation::get_message_insights::GetMessageInsightsError>,
> {
    loop {
        match client.get_message_insights().message_id(id).send().await {
            Err(e) if e.code() == Some("TooManyRequestsException") => {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            other => return other,
        }
    }
}

async fn not_found<T, E: ProvideErrorMetadata + std::fmt::Debug>(result: Result<T, E>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: found in the other region"),
        Err(e) => assert_eq!(e.code(), Some("NotFoundException"), "{what}: {e:?}"),
    }
}

async fn regions_are_kept_apart(server: &Server) {
    let us = server.client_in("us-east-1", DEV.0, DEV.1);
    let eu = server.client_in("eu-west-1", DEV.0, DEV.1);

    // Through a us-east-1 request: one event of each region, by sourceArn.
    let body = send("m-us", Some("us-east-1")) + &send("m-eu", Some("eu-west-1"));
    let report = server
        .signed_in("us-east-1", "POST", INGEST, body.as_bytes(), DEV)
        .await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["accepted"], 2);
    // Through a eu-west-1 request: no sourceArn, so the request's region.
    let body = send("m-plain", None);
    let report = server
        .signed_in("eu-west-1", "POST", INGEST, body.as_bytes(), DEV)
        .await;
    assert_eq!(report.status, 200, "{}", report.text());

    // Message insights.
    insights(&us, "m-us").await.expect("m-us in us-east-1");
    not_found(insights(&us, "m-eu").await, "m-eu from us-east-1").await;
    not_found(insights(&us, "m-plain").await, "m-plain from us-east-1").await;
    insights(&eu, "m-eu").await.expect("m-eu in eu-west-1");
    insights(&eu, "m-plain").await.expect("m-plain in eu-west-1");
    not_found(insights(&eu, "m-us").await, "m-us from eu-west-1").await;

    // Metrics.
    assert_eq!(sends(&us).await, 1);
    assert_eq!(sends(&eu).await, 2);

    // Jobs, and the active-jobs cap (--max-active-jobs 1), per region; the
    // rate limit of one CreateExportJob a second too (both in one second).
    let source = || send_volume_by_isp(T0, T0 + 86_400);
    let eu_job = create_export(&eu, source(), DataFormat::Csv).await;
    let us_job = create_export(&us, source(), DataFormat::Csv).await;
    not_found(
        us.get_export_job().job_id(&eu_job).send().await,
        "a eu-west-1 job from us-east-1",
    )
    .await;
    not_found(
        us.cancel_export_job().job_id(&eu_job).send().await,
        "cancelling from us-east-1",
    )
    .await;
    let listed = us.list_export_jobs().send().await.expect("list");
    let ids: Vec<&str> = listed.export_jobs().iter().filter_map(|j| j.job_id()).collect();
    assert_eq!(ids, [us_job.as_str()]);
    let eu_read = eu
        .get_export_job()
        .job_id(&eu_job)
        .send()
        .await
        .expect("the job in its region");
    assert_eq!(eu_read.job_id(), Some(eu_job.as_str()));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let over = us
        .create_export_job()
        .export_data_source(source())
        .export_destination(
            aws_sdk_sesv2::types::ExportDestination::builder()
                .data_format(DataFormat::Csv)
                .build()
                .expect("destination"),
        )
        .send()
        .await
        .expect_err("a second active job in us-east-1");
    assert_eq!(over.code(), Some("LimitExceededException"), "{over:?}");

    // Page tokens: a second job in us-east-1 (the first cancelled), and a
    // token of that list is refused in eu-west-1.
    us.cancel_export_job().job_id(&us_job).send().await.expect("cancel");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    create_export(&us, source(), DataFormat::Json).await;
    let page = us.list_export_jobs().page_size(1).send().await.expect("page");
    let token = page.next_token().expect("a second page").to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    us.list_export_jobs()
        .page_size(1)
        .next_token(&token)
        .send()
        .await
        .expect("the token in its own region");
    let refused = eu
        .list_export_jobs()
        .page_size(1)
        .next_token(&token)
        .send()
        .await
        .expect_err("a us-east-1 token in eu-west-1");
    assert_eq!(refused.code(), Some("BadRequestException"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_kept_apart_on_sqlite() {
    let server = Server::start(&["--max-active-jobs", "1", "--min-job-duration-ms", "60000"]).await;
    regions_are_kept_apart(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_kept_apart_on_postgres() {
    let Some(pg) =
        ses_export_tests::PgServer::start("regions", &["--max-active-jobs", "1", "--min-job-duration-ms", "60000"])
            .await
    else {
        return;
    };
    regions_are_kept_apart(&pg.server).await;
    pg.finish().await;
}

/// A data dir written before regions existed (every row keyed by the bare
/// account) opens with its data in `--default-region`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_regions_is_the_default_regions() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let server = Server::start_in(dir.path(), &[]).await;
        let report = server.signed("POST", INGEST, send("m-old", None).as_bytes(), DEV).await;
        assert_eq!(report.status, 200, "{}", report.text());
        create_export(&server.client(), send_volume_by_isp(T0, T0 + 86_400), DataFormat::Csv).await;
        server.kill().await;
    }
    // Make it what the previous version wrote: schema 4 and 2, made by the
    // steps of that time, with every row under the bare account.
    use ses_export_core::backend::sqlite::older;
    type Make = fn(&std::path::Path, usize, &std::path::Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    let old = |file: &str, make: Make, version: usize| {
        let (path, made) = (dir.path().join(file), dir.path().join(format!("older-{file}")));
        make(&made, version, &path).expect("an older store");
        for stale in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{stale}", path.display()));
        }
        std::fs::rename(&made, &path).expect("in place");
        rusqlite::Connection::open(&path).expect("open")
    };
    old("events.sqlite", older::event_store, 4)
        .execute_batch(
            "UPDATE messages SET account = substr(account, 1, 12); UPDATE events SET account = substr(account, 1, 12); \
             UPDATE insights SET account = substr(account, 1, 12); UPDATE metric_days SET account = substr(account, 1, 12); \
             UPDATE learned SET account = substr(account, 1, 12);",
        )
        .expect("bare accounts");
    old("jobs.sqlite", older::job_store, 2)
        .execute_batch("UPDATE export_jobs SET account = substr(account, 1, 12);")
        .expect("bare accounts");
    let server = Server::start_in(dir.path(), &["--default-region", "eu-west-1"]).await;
    let eu = server.client_in("eu-west-1", DEV.0, DEV.1);
    insights(&eu, "m-old")
        .await
        .expect("the old message, in the default region");
    assert_eq!(eu.list_export_jobs().send().await.expect("list").export_jobs().len(), 1);
    not_found(
        insights(&server.client(), "m-old").await,
        "the old message from us-east-1",
    )
    .await;
}

/// An intake key's `region` in the credentials file places the events it
/// brings that name none; a `sourceArn` still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_keys_region_places_its_events() {
    let key = "intake-key-in-eu-west-1-0123456789";
    let server = Server::with_credentials(
        &format!(
            "[[credentials]]\naccess_key_id = \"AKIAREGIONS\"\nsecret_access_key = \"secret-of-regions\"\n\
             account_id = \"123456789012\"\nintake_keys = [\"{key}\"]\nregion = \"eu-west-1\"\n"
        ),
        &["--rate-limits", "off"],
    )
    .await;
    let body = send("m-keyed", None) + &send("m-arn", Some("us-west-2"));
    let response = ses_export_tests::http_client()
        .post(format!("{}{INGEST}", server.url))
        .header("x-api-key", key)
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status().as_u16(), 200);
    let eu = server.client_in("eu-west-1", "AKIAREGIONS", "secret-of-regions");
    let west = server.client_in("us-west-2", "AKIAREGIONS", "secret-of-regions");
    insights(&eu, "m-keyed").await.expect("the key's region");
    insights(&west, "m-arn").await.expect("the sourceArn's region");
    not_found(insights(&eu, "m-arn").await, "m-arn in eu-west-1").await;
    let page = server.unsigned("GET", "/metrics", b"").await.text();
    for region in ["eu-west-1", "us-west-2"] {
        assert!(
            page.contains(&format!(
                "ses_export_events_total{{source=\"events\",outcome=\"accepted\",region=\"{region}\"}} 1"
            )),
            "{page}"
        );
    }
}

/// The CLI's `--region` (as `AWS_REGION` or the profile's) chooses the data
/// as it chooses the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_region_chooses_the_data() {
    let server = Server::start(&["--rate-limits", "off"]).await;
    let eu = server.client_in("eu-west-1", DEV.0, DEV.1);
    let job = create_export(&eu, send_volume_by_isp(T0, T0 + 86_400), DataFormat::Csv).await;
    let url = server.url.clone();
    let list = move |region: Option<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = ses_export_tests::cli_command(&url);
            if let Some(region) = region {
                command.args(["--region", region]);
            }
            let output = command.arg("list-export-jobs").output().expect("run the CLI");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
    };
    let in_eu = list(Some("eu-west-1")).await.expect("join");
    assert!(in_eu.contains(&job), "{in_eu}");
    let in_us = list(Some("us-east-1")).await.expect("join");
    assert!(!in_us.contains(&job), "{in_us}");
}
