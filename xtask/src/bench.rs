//! `cargo xtask bench`: runs the workloads of `crates/core/examples/bench.rs`
//! and the same work done by DuckDB (`xtask/bench/duckdb_bench.py`) on the
//! same generated data, in one run, and writes `docs/benchmarks.md`.
//!
//! Each workload runs in its own process, so each reports its own peak
//! memory. Queries run three times and the fastest counts; ingest once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::root;

const DEFAULT_MESSAGES: u64 = 1_000_000;
const QUERY_RUNS: usize = 3;

pub fn run(args: &[&str]) -> Result<(), String> {
    let messages = match args {
        [] => DEFAULT_MESSAGES,
        ["--messages", n] => n.parse().map_err(|e| format!("--messages {n}: {e}"))?,
        _ => return Err(format!("unknown bench arguments {args:?}")),
    };
    let root = root();
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;

    step("building the Rust workloads (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run_status(Command::new(&cargo).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "ses-export-core",
        "--example",
        "bench",
    ]))?;
    let ours = root.join("target/release/examples/bench");
    ensure_duckdb()?;
    let duck_script = root.join("xtask/bench/duckdb_bench.py");
    let duck_version = capture(Command::new("python3").args(["-c", "import duckdb; print(duckdb.__version__)"]))?;

    let data = dir.join(format!("events-{messages}.jsonl"));
    let generated = if data.exists() {
        step(&format!("reusing {}", data.display()));
        None
    } else {
        step(&format!("generating {messages} messages"));
        Some(json(
            Command::new(&ours).arg("generate").arg(messages.to_string()).arg(&data),
        )?)
    };
    let bytes = std::fs::metadata(&data).map_err(|e| e.to_string())?.len();

    // The SQLite store is made where a server's data dir keeps it, so the
    // server workloads below run over the same 1,000,000 messages.
    let server_dir = dir.join(format!("server-{messages}"));
    if server_dir.exists() {
        std::fs::remove_dir_all(&server_dir).map_err(|e| format!("removing {}: {e}", server_dir.display()))?;
    }
    std::fs::create_dir_all(&server_dir).map_err(|e| e.to_string())?;
    let sqlite = server_dir.join("events.sqlite");
    let duck = fresh(&dir.join(format!("events-{messages}.duckdb")))?;
    step("ingest: ses-export (SQLite)");
    let our_ingest = json(Command::new(&ours).arg("ingest").arg(&sqlite).arg(&data))?;
    step("ingest: DuckDB");
    let duck_ingest = json(
        Command::new("python3")
            .arg(&duck_script)
            .arg("ingest")
            .arg(&duck)
            .arg(&data),
    )?;

    let mut rows = vec![Row::new(
        "ingest (JSONL to stored insight records)",
        &our_ingest,
        &duck_ingest,
    )];
    for workload in ["insights", "metrics"] {
        step(&format!("{workload}: ses-export and DuckDB, best of {QUERY_RUNS}"));
        let ours = best((0..QUERY_RUNS).map(|_| json(Command::new(&ours).arg(workload).arg(&sqlite))))?;
        let theirs =
            best((0..QUERY_RUNS).map(|_| json(Command::new("python3").arg(&duck_script).arg(workload).arg(&duck))))?;
        let name = match workload {
            "insights" => "message-insights query (filters, 10,000 sample)",
            _ => "metrics query (10 metrics by identity and ISP)",
        };
        rows.push(Row::new(name, &ours, &theirs));
    }

    step("server: building ses-export-server and the HTTP load (release)");
    run_status(Command::new(&cargo).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "ses-export-server",
        "--bin",
        "ses-export-server",
        "-p",
        "ses-export-tests",
        "--example",
        "http_bench",
    ]))?;
    step("server: a 10,000-row export, then GetExportJob under signed load beside a bare axum handler");
    let http = json(
        Command::new(root.join("target/release/examples/http_bench"))
            .arg(&server_dir)
            .args(["5", "8"]),
    )?;

    let postgres = postgres(&ours, &data, &root);

    let events = our_ingest["accepted"].as_u64().unwrap_or(0);
    let mut report = render(
        messages,
        events,
        bytes,
        &duck_version,
        generated.as_ref(),
        &our_ingest,
        &rows,
    );
    report.push_str(&render_server(&http));
    report.push_str(&render_postgres(&postgres, &our_ingest, &rows));
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, &report).map_err(|e| format!("writing {}: {e}", out.display()))?;
    println!("\n{report}");
    println!("wrote {}", out.display());
    Ok(())
}

struct Row {
    name: &'static str,
    ours: Value,
    theirs: Value,
}

impl Row {
    fn new(name: &'static str, ours: &Value, theirs: &Value) -> Row {
        Row {
            name,
            ours: ours.clone(),
            theirs: theirs.clone(),
        }
    }
}

fn seconds(v: &Value) -> f64 {
    v["seconds"].as_f64().unwrap_or(f64::NAN)
}

fn mib(v: &Value) -> f64 {
    v["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / (1024.0 * 1024.0)
}

fn render(
    messages: u64,
    events: u64,
    bytes: u64,
    duck_version: &str,
    generated: Option<&Value>,
    our_ingest: &Value,
    rows: &[Row],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Made by `cargo xtask bench` (`--messages {messages}`) on {}: {}.",
        today(),
        machine()
    );
    let _ = writeln!(
        out,
        "Data: {messages} generated messages, {events} SES event records, {:.0} MiB of JSON Lines \
         (`crates/core/src/generate.rs`, seed 2026, 30 days). DuckDB {duck_version} from PyPI does the same work \
         (`xtask/bench/duckdb_bench.py`) on the same file in the same run. Each workload is its own process; \
         time is the work only (not process start), memory is the process's peak RSS. Queries: best of {QUERY_RUNS}.\n",
        bytes as f64 / (1024.0 * 1024.0)
    );
    if let Some(g) = generated {
        let _ = writeln!(out, "Generating the data took {:.1} s.\n", seconds(g));
    }
    let _ = writeln!(
        out,
        "| workload | ses-export | DuckDB | DuckDB time / ours | ses-export peak | DuckDB peak |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let (a, b) = (seconds(&row.ours), seconds(&row.theirs));
        let _ = writeln!(
            out,
            "| {} | {:.3} s | {:.3} s | {:.2}× | {:.0} MiB | {:.0} MiB |",
            row.name,
            a,
            b,
            b / a,
            mib(&row.ours),
            mib(&row.theirs)
        );
    }
    let rate = events as f64 / seconds(our_ingest);
    let _ = writeln!(
        out,
        "\nIngest rate: {:.0} events/s into SQLite (each event deduplicated, kept for `GetMessageInsights`, \
         its insight record and the daily metric rollups updated, one transaction per 5,000 events).\n",
        rate
    );
    let _ = writeln!(
        out,
        "Results both sides agree on (a check that they did the same work):\n"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "- {}: ses-export `{}`; DuckDB `{}`",
            row.name,
            strip(&row.ours),
            strip(&row.theirs)
        );
    }
    out.push_str(ANALYSIS);
    out
}

/// The same workloads on PostgreSQL, and GetExportJob across one and three
/// servers on it; `Err` says why they were skipped.
fn postgres(ours: &Path, data: &Path, root: &Path) -> Result<Vec<(&'static str, Value)>, String> {
    let base = std::env::var("SES_EXPORT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = |_: ()| -> Result<String, String> {
        let out = json(Command::new(ours).arg("pg-schema").arg(&base))?;
        out["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no schema URL".to_owned())
    };
    let url = schema(()).map_err(|e| format!("PostgreSQL at {base} is not reachable ({e})"))?;
    step("PostgreSQL: ingest, then the two queries, best of 3");
    let ingest = json(Command::new(ours).arg("ingest").arg(&url).arg(data))?;
    let insights = best((0..QUERY_RUNS).map(|_| json(Command::new(ours).arg("insights").arg(&url))))?;
    let metrics = best((0..QUERY_RUNS).map(|_| json(Command::new(ours).arg("metrics").arg(&url))))?;
    step("PostgreSQL: GetExportJob on one server, then across three");
    let cluster_url = schema(())?;
    let cluster = json(
        Command::new(root.join("target/release/examples/http_bench"))
            .arg("cluster")
            .arg(&cluster_url)
            .args(["5", "8"]),
    )?;
    Ok(vec![
        ("ingest", ingest),
        ("insights", insights),
        ("metrics", metrics),
        ("cluster", cluster),
    ])
}

fn render_postgres(
    postgres: &Result<Vec<(&'static str, Value)>, String>,
    sqlite_ingest: &Value,
    rows: &[Row],
) -> String {
    let mut out = String::from("\n## PostgreSQL\n\n");
    let results = match postgres {
        Ok(results) => results,
        Err(why) => {
            let _ = writeln!(out, "Skipped: {why}.");
            return out;
        }
    };
    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "The same data and workloads with the PostgreSQL backend (the machine's PostgreSQL on 127.0.0.1, a schema \
         of its own), beside SQLite from the table above.\n"
    );
    let _ = writeln!(out, "| workload | SQLite | PostgreSQL | PostgreSQL peak (client) |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let pg_rows = [
        ("ingest", sqlite_ingest.clone()),
        ("insights", rows[1].ours.clone()),
        ("metrics", rows[2].ours.clone()),
    ];
    for (name, sqlite) in pg_rows {
        let pg = get(name);
        let _ = writeln!(
            out,
            "| {name} | {:.3} s | {:.3} s | {:.0} MiB |",
            seconds(&sqlite),
            seconds(&pg),
            mib(&pg)
        );
    }
    let events = get("ingest")["accepted"].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "\nIngest rate on PostgreSQL: {:.0} events/s.\n",
        events / seconds(&get("ingest"))
    );
    let cluster = get("cluster");
    if let Some(skipped) = cluster["skipped"].as_str() {
        let _ = writeln!(out, "GetExportJob across servers: skipped ({skipped}).");
    } else {
        let rps = |v: &Value| v["rps"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "`GetExportJob` (signed, rate limits off) with the load spread over one server, then three, all on this \
             machine's two cores: {:.0} requests/s (p99 {:.2} ms) on one, {:.0} requests/s (p99 {:.2} ms) on three. \
             On one machine a second and third server add processes, not cores; across machines the servers share \
             only PostgreSQL, which this call reads once.",
            rps(&cluster["one_server"]),
            cluster["one_server"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
            rps(&cluster["three_servers"]),
            cluster["three_servers"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    out
}

fn render_server(http: &Value) -> String {
    let mut out = String::from("\n## The server\n\n");
    let ours = &http["get_export_job"];
    let bare = &http["bare_axum"];
    let rps = |v: &Value| v["rps"].as_f64().unwrap_or(f64::NAN);
    let p = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "Release `ses-export-server` (rate limits off, one worker) over the store above, and the load generator \
         (`tests/examples/http_bench.rs`: {} concurrent connections for {} s, every request signed with `aws-sigv4`) \
         share the machine's cores. The baseline is a bare axum handler in the load generator's process that answers \
         the same path with a fixed body, under the same signed load.\n",
        http["concurrency"], http["seconds"]
    );
    let _ = writeln!(out, "| workload | requests/s | p50 | p99 |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let _ = writeln!(
        out,
        "| `GetExportJob`, SigV4 verified, SQLite job store | {:.0} | {:.2} ms | {:.2} ms |",
        rps(ours),
        p(ours, "p50_ms"),
        p(ours, "p99_ms")
    );
    let _ = writeln!(
        out,
        "| bare axum handler | {:.0} | {:.2} ms | {:.2} ms |",
        rps(bare),
        p(bare, "p50_ms"),
        p(bare, "p99_ms")
    );
    let _ = writeln!(out, "\nThroughput ratio (ours / bare): {:.2}.\n", rps(ours) / rps(bare));
    let _ = writeln!(
        out,
        "`CreateExportJob` to `COMPLETED` for a {}-row message-insights export (all {} records of the month scanned, \
         sampled, written as CSV): {:.2} s. Peak server memory over the whole run: {:.0} MiB.",
        http["export_rows"],
        http["export_processed"],
        http["export_seconds"].as_f64().unwrap_or(f64::NAN),
        http["server_peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / (1024.0 * 1024.0)
    );
    out
}

/// A result without its timing fields.
fn strip(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("seconds");
        o.remove("peak_rss_bytes");
    }
    v.to_string()
}

const ANALYSIS: &str = "
## Where we stand, and what limits us

- **Ingest** does more than DuckDB's: every event is kept (for `GetMessageInsights`) under a unique key
  (the same event twice counts once, across batches and restarts), each insight record is updated in
  place, and the daily rollups are maintained, all durably in SQLite's WAL. DuckDB parses the file and
  aggregates it in one columnar pass, with all cores and no per-event index. Our limits: SQLite B-tree
  inserts on one writer thread (parsing runs on a second thread), and writing each page twice (WAL,
  then checkpoint).
- **Message insights** scan the insight records in export order (the table is clustered on send time,
  message id and destination, so there is no sort); each row is judged on its borrowed columns and
  only the rows the filters keep are built into records. What remains is SQLite stepping through
  every row of the interval, whole, on one thread; DuckDB reads only the filtered columns, on all
  cores. An index on the filtered columns, or keeping the few filter columns apart from the wide
  rows, is what would close the gap.
- **Metrics** read the daily rollups for whole days and recount only the partial days at either end,
  so they cost the same for a year as for a day; DuckDB scans every record in the interval.
";

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn fresh(path: &Path) -> Result<PathBuf, String> {
    for suffix in ["", "-wal", "-shm", ".wal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::remove_file(&file).map_err(|e| format!("removing {}: {e}", file.display()))?;
        }
    }
    Ok(path.to_owned())
}

fn run_status(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn capture(cmd: &mut Command) -> Result<String, String> {
    let output = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn json(cmd: &mut Command) -> Result<Value, String> {
    let text = capture(cmd)?;
    serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|e| format!("{cmd:?} printed {text:?}: {e}"))
}

fn best(runs: impl Iterator<Item = Result<Value, String>>) -> Result<Value, String> {
    let mut best: Option<Value> = None;
    for run in runs {
        let run = run?;
        if best.as_ref().is_none_or(|b| seconds(&run) < seconds(b)) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| "no runs".to_owned())
}

fn ensure_duckdb() -> Result<(), String> {
    let present = Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    step("installing duckdb from PyPI");
    run_status(Command::new("python3").args(["-m", "pip", "install", "--quiet", "duckdb"]))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("unknown memory".to_owned(), |kb| {
            format!("{:.0} GiB", kb / 1024.0 / 1024.0)
        });
    format!("{cores} cores ({cpu}), {memory}, Linux")
}

fn today() -> String {
    capture(Command::new("date").args(["-u", "+%Y-%m-%d"])).unwrap_or_else(|_| "today".to_owned())
}
