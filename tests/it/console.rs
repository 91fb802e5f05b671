//! The console (SPEC §12) in a real browser: Debian's Chromium driven over
//! WebDriver (chromedriver, through fantoccini) against the real server
//! with a week of seeded events. Sign in (a wrong secret refused), create
//! an export from the form (a validation message beside its field first),
//! see it reach COMPLETED, download it, check the dashboard's points against
//! BatchGetMetricData, follow a message's timeline; a screenshot of each
//! page. And without a browser: no data without a signature, and nothing a
//! page of another origin can do for a signed-in user.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use ses_export_tests::{Server, http_client};

const DAY: i64 = 86_400;

/// chromedriver on a free port, or `None` when it is not installed
/// (outside CI: `.ci/run` installs Debian's chromium and chromium-driver).
async fn webdriver() -> Option<(tokio::process::Child, String)> {
    let Ok(path) = which("chromedriver") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is needed in CI (apt-get install chromium-driver)"
        );
        eprintln!("skipping: chromedriver is not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = tokio::process::Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http_client().get(format!("{url}/status")).send().await.is_ok() {
            return Some((child, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

async fn browser(webdriver: &str) -> Client {
    let mut capabilities = serde_json::Map::new();
    let mut options = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
    });
    if let Ok(binary) = which("chromium") {
        options["binary"] = binary.display().to_string().into();
    }
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a browser session")
}

/// Evaluates `script` (a function body) until it returns something other
/// than null or false, for at most `seconds`.
async fn until(client: &Client, seconds: u64, script: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let value = client.execute(script, vec![]).await.expect("script");
        if !value.is_null() && value != serde_json::Value::Bool(false) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {seconds} s for: {script}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set(client: &Client, css: &str, value: &str) {
    let field = client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = std::env::var_os("SES_EXPORT_CONSOLE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ses-export-console"));
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// A week of events ending now; one message id from it.
async fn seed(server: &Server) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let config = ses_export_core::generate::GeneratorConfig::new(
        12,
        600,
        ses_export_core::clock::Millis((now / DAY - 7) * DAY * 1000),
        7,
    );
    let mut body = String::new();
    for line in ses_export_core::generate::EventGenerator::new(config) {
        body.push_str(&line);
        body.push('\n');
    }
    let report = server.ingest(body.as_bytes()).await;
    assert!(report["accepted"].as_u64().unwrap_or(0) > 1000, "{report}");
    let first: serde_json::Value = serde_json::from_str(body.lines().next().expect("a line")).expect("JSON");
    first["mail"]["messageId"].as_str().expect("message id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some((_driver, webdriver)) = webdriver().await else {
        return;
    };
    let server = Server::start(&["--rate-limits", "off"]).await;
    let message_id = seed(&server).await;
    let client = browser(&webdriver).await;
    let console = format!("{}/_ses-export/console/", server.url);

    // Sign in: a wrong secret is refused, and nothing is shown.
    client.goto(&console).await.expect("open the console");
    until(
        &client,
        10,
        "return document.querySelector('input[name=accessKey]') !== null",
    )
    .await;
    screenshot(&client, "sign-in").await;
    set(&client, "input[name=accessKey]", "test").await;
    set(&client, "input[name=secret]", "not-the-secret").await;
    click(&client, "button[type=submit]").await;
    let refused = until(
        &client,
        10,
        "const e = document.getElementById('sign-in-error'); return e && e.textContent",
    )
    .await;
    assert!(refused.as_str().expect("text").contains("refused"), "{refused}");
    assert!(
        client
            .execute("return document.getElementById('jobs')", vec![])
            .await
            .expect("script")
            .is_null()
    );
    set(&client, "input[name=accessKey]", "test").await;
    set(&client, "input[name=secret]", "test").await;
    click(&client, "button[type=submit]").await;
    until(&client, 10, "return document.getElementById('jobs') !== null").await;
    // Signed in for the server's default region, which the picker shows.
    let region = client
        .execute("return document.getElementById('region').value", vec![])
        .await
        .expect("region");
    assert_eq!(region, "us-east-1");

    // New export: a message beside the field it names, then a job.
    client.goto(&format!("{console}#/new")).await.expect("new export");
    until(&client, 10, "return document.getElementById('new-export') !== null").await;
    // The ten metrics, each with VOLUME and RATE, and the four dimensions.
    let choices = client
        .execute(
            "return [document.querySelectorAll('input[name=metric]').length, \
             document.querySelectorAll('input[name=dimension]').length]",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(choices, serde_json::json!([20, 4]));
    client
        .execute(
            "document.querySelectorAll('input[name=metric]').forEach(c => { c.checked = false; })",
            vec![],
        )
        .await
        .expect("uncheck");
    click(&client, "#new-export button[type=submit]").await;
    let beside = until(
        &client,
        10,
        "return document.getElementById('error-Metrics').textContent || null",
    )
    .await;
    assert!(beside.as_str().expect("text").contains("etrics"), "{beside}");
    screenshot(&client, "new-export").await;
    client
        .execute(
            "for (const v of ['SEND:VOLUME', 'DELIVERY:RATE']) document.querySelector(`input[value=\"${v}\"]`).checked = true",
            vec![],
        )
        .await
        .expect("check");
    click(&client, "#new-export button[type=submit]").await;
    let job_id = until(
        &client,
        10,
        "const a = document.getElementById('created-job'); return a && a.textContent",
    )
    .await;
    let job_id = job_id.as_str().expect("id").to_owned();

    // The jobs table shows it reach COMPLETED, live; download it.
    client.goto(&format!("{console}#/jobs")).await.expect("jobs");
    let status_script = format!(
        "const r = document.querySelector('tr[data-job=\"{job_id}\"] td:nth-child(3)'); return r && r.textContent === 'COMPLETED'"
    );
    until(&client, 30, &status_script).await;
    screenshot(&client, "jobs").await;
    click(&client, &format!("tr[data-job=\"{job_id}\"] button.download")).await;
    let url = until(
        &client,
        10,
        "const a = document.getElementById('download-link'); return a && a.href",
    )
    .await;
    let file = http_client()
        .get(url.as_str().expect("url"))
        .send()
        .await
        .expect("download");
    assert_eq!(file.status().as_u16(), 200);
    let csv = file.text().await.expect("body");
    assert!(csv.starts_with("ISP,"), "{csv}");

    // The dashboard's daily sends equal BatchGetMetricData's.
    client.goto(&format!("{console}#/dashboard")).await.expect("dashboard");
    let points = until(
        &client,
        30,
        "const d = [...document.querySelectorAll('figure[data-series=send] circle')]; \
         return d.length ? d.map(c => [Number(c.dataset.t), Number(c.dataset.v)]) : null",
    )
    .await;
    let start = client
        .execute("return document.getElementById('dash-start').value", vec![])
        .await
        .expect("start");
    let end = client
        .execute("return document.getElementById('dash-end').value", vec![])
        .await
        .expect("end");
    let day = |text: &serde_json::Value| {
        ses_export_core::clock::parse_iso8601(&format!("{}T00:00:00Z", text.as_str().expect("date")))
            .expect("date")
            .0
            / 1000
    };
    let api = server
        .signed(
            "POST",
            "/v2/email/metrics/batch",
            serde_json::json!({"Queries": [{"Id": "send", "Namespace": "VDM", "Metric": "SEND",
                "StartDate": day(&start), "EndDate": day(&end)}]})
            .to_string()
            .as_bytes(),
            ("test", "test"),
        )
        .await
        .json();
    let result = &api["Results"][0];
    let expected: Vec<serde_json::Value> = result["Timestamps"]
        .as_array()
        .expect("timestamps")
        .iter()
        .zip(result["Values"].as_array().expect("values"))
        .map(|(t, v)| serde_json::json!([t.as_f64().expect("t"), v.as_f64().expect("v")]))
        .collect();
    let shown: Vec<serde_json::Value> = points
        .as_array()
        .expect("points")
        .iter()
        .map(|p| serde_json::json!([p[0].as_f64().expect("t"), p[1].as_f64().expect("v")]))
        .collect();
    assert_eq!(shown, expected, "the chart's points are BatchGetMetricData's");
    assert!(expected.iter().any(|p| p[1].as_f64() > Some(0.0)), "sends in the week");

    // The open rate is OPEN / DELIVERY_OPEN, day by day; a day without a
    // delivery that could be opened has no point (a gap), not 0 %.
    let metric = |name: &str| {
        let query = serde_json::json!({"Queries": [{"Id": "q", "Namespace": "VDM", "Metric": name,
            "StartDate": day(&start), "EndDate": day(&end)}]});
        let server = &server;
        async move {
            let answer = server
                .signed(
                    "POST",
                    "/v2/email/metrics/batch",
                    query.to_string().as_bytes(),
                    ("test", "test"),
                )
                .await
                .json();
            let result = &answer["Results"][0];
            result["Timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .zip(result["Values"].as_array().expect("values"))
                .map(|(t, v)| (t.as_f64().expect("t"), v.as_f64().expect("v")))
                .collect::<Vec<_>>()
        }
    };
    let (opens, deliveries) = (metric("OPEN").await, metric("DELIVERY_OPEN").await);
    let expected_rates: Vec<(f64, f64)> = opens
        .iter()
        .zip(&deliveries)
        .filter(|(_, (_, d))| *d > 0.0)
        .map(|((t, o), (_, d))| (*t, o / d))
        .collect();
    let rates = client
        .execute(
            "return [...document.querySelectorAll('figure[data-series=open] circle')].map(c => [Number(c.dataset.t), Number(c.dataset.v)])",
            vec![],
        )
        .await
        .expect("open points");
    let rates: Vec<(f64, f64)> = rates
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p[0].as_f64().expect("t"), p[1].as_f64().expect("v")))
        .collect();
    assert_eq!(
        rates.len(),
        expected_rates.len(),
        "{rates:?} against {expected_rates:?}"
    );
    for ((t, v), (want_t, want_v)) in rates.iter().zip(&expected_rates) {
        assert_eq!(t, want_t);
        assert!(
            (v - want_v).abs() < 1e-9,
            "open rate on {t}: {v}, BatchGetMetricData says {want_v}"
        );
    }
    assert!(
        rates.len() < opens.len() && !rates.is_empty(),
        "empty days are gaps: {} points over {} days",
        rates.len(),
        opens.len()
    );
    // Reputation: the two rates as the server's endpoint gives them, each
    // with AWS's review and pause lines drawn.
    let shown = until(
        &client,
        10,
        "const b = document.querySelector('figure[data-reputation=bounce] svg'); \
         const c = document.querySelector('figure[data-reputation=complaint] svg'); \
         return b && c ? [b.dataset.rate, c.dataset.rate, document.querySelectorAll('#reputation line.pause').length] : null",
    )
    .await;
    let reputation = server
        .signed("GET", "/_ses-export/v1/reputation", b"", ("test", "test"))
        .await
        .json();
    let as_number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    assert_eq!(as_number(&shown[0]), reputation["BounceRate"].as_f64(), "{shown}");
    assert_eq!(as_number(&shown[1]), reputation["ComplaintRate"].as_f64(), "{shown}");
    assert_eq!(shown[2], 2, "a pause line on each bar");
    // Each point says its day and value on keyboard focus.
    let said = client
        .execute(
            "const c = document.querySelector('figure[data-series=open] circle'); c.focus(); \
             return [c.getAttribute('tabindex'), c.getAttribute('aria-label'), \
             document.querySelector('figure[data-series=open] text.tip').textContent]",
            vec![],
        )
        .await
        .expect("focus");
    assert_eq!(said[0], "0");
    assert_eq!(said[1], said[2], "the focused point's label is shown");
    assert!(
        said[1]
            .as_str()
            .is_some_and(|s| s.contains(" %") && s.starts_with("20")),
        "{said}"
    );
    let formulas = client
        .execute("return document.getElementById('formulas').textContent", vec![])
        .await
        .expect("formulas");
    assert!(
        formulas.as_str().is_some_and(|f| f.contains("OPEN / DELIVERY_OPEN")
            && f.contains("CLICK / DELIVERY_CLICK")
            && f.contains("COMPLAINT / DELIVERY_COMPLAINT")),
        "{formulas}"
    );
    until(
        &client,
        60,
        "return document.getElementById('breakdown-table') !== null",
    )
    .await;
    screenshot(&client, "dashboard").await;

    // Message lookup: the message's timeline per recipient.
    client.goto(&format!("{console}#/lookup")).await.expect("lookup");
    until(&client, 10, "return document.getElementById('message-id') !== null").await;
    set(&client, "#message-id", &message_id).await;
    click(&client, "main form button[type=submit]").await;
    let events = until(
        &client,
        10,
        "const e = document.querySelectorAll('ol.timeline li'); return e.length || null",
    )
    .await;
    assert!(events.as_u64().expect("count") >= 1);
    screenshot(&client, "message-lookup").await;

    // Signing out forgets the credential: the pages ask to sign in again.
    click(&client, "#sign-out").await;
    until(
        &client,
        10,
        "return document.querySelector('input[name=accessKey]') !== null",
    )
    .await;
    let stored = client
        .execute("return sessionStorage.length", vec![])
        .await
        .expect("storage");
    assert_eq!(stored, serde_json::json!(0));
    client.close().await.expect("close the browser");
}

#[tokio::test]
async fn nothing_without_a_signature_and_nothing_for_another_origin() {
    let server = Server::start(&[]).await;
    // The page itself carries no data, and a strict policy.
    let page = http_client()
        .get(format!("{}/_ses-export/console/", server.url))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let script = http_client()
        .get(format!("{}/_ses-export/console/console.js", server.url))
        .send()
        .await
        .expect("script");
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        http_client()
            .get(format!("{}/_ses-export/console/../../healthz", server.url))
            .send()
            .await
            .expect("traversal")
            .status()
            .as_u16()
            / 100,
        2,
        "a normalised path is just another route"
    );
    assert_eq!(
        server
            .unsigned("GET", "/_ses-export/console/secrets.txt", b"")
            .await
            .status,
        404
    );

    // A page of another origin, posting with the browser's ambient
    // credentials: there are none (no cookies, no sessions), so it is an
    // unsigned call, refused; and no CORS header lets it read an answer.
    for (method, path, body) in [
        ("POST", "/v2/email/list-export-jobs", "{}"),
        (
            "POST",
            "/v2/email/export-jobs",
            r#"{"ExportDataSource": {}, "ExportDestination": {"DataFormat": "CSV"}}"#,
        ),
    ] {
        let response = http_client()
            .request(method.parse().expect("method"), format!("{}{path}", server.url))
            .header("origin", "https://evil.example")
            .header("content-type", "text/plain")
            .header("cookie", "session=anything")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 403, "{path}");
        assert!(response.headers().get("access-control-allow-origin").is_none());
    }
    let preflight = http_client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v2/email/list-export-jobs", server.url),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
    assert!(!preflight.status().is_success());
}
