//! `cargo xtask bench`: the server as users meet it. The release
//! `ses-export-server` is driven over HTTP (`tests/examples/server_bench.rs`:
//! signed ingest bodies, exports created, polled and downloaded, and
//! `GetExportJob` under `wrk`), on SQLite and on PostgreSQL, for each data
//! set and size; DuckDB does the same work on the same file
//! (`xtask/bench/duckdb_bench.py`) and a bare axum handler takes the same
//! `wrk` load, in the same run. Writes `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{root, target_dir};

const DEFAULT_MESSAGES: u64 = 1_000_000;
const QUERY_RUNS: usize = 3;
const ARRIVALS: [&str; 2] = ["live", "backfill"];
const DUCK_EXPORTS: [(&str, &str); 4] = [
    ("insights_all", "insights export, no filter, MaxResults 10,000"),
    (
        "insights_gmail_delivered",
        "insights export, Isp = Gmail ∧ LastDeliveryEvent = DELIVERY",
    ),
    (
        "insights_from_news",
        "insights export, From `*@news.example.com`, Exclude Subject `Your weekly*`",
    ),
    ("metrics", "metrics export, 10 metrics by identity and ISP, 30 days"),
];

struct Options {
    sizes: Vec<u64>,
    /// The largest size PostgreSQL runs at (its ingest is the slow part).
    postgres_messages: u64,
}

fn options(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        sizes: vec![DEFAULT_MESSAGES],
        postgres_messages: DEFAULT_MESSAGES,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--messages" => {
                let list = args.next().ok_or("--messages needs N[,N...]")?;
                options.sizes = list
                    .split(',')
                    .map(|n| n.parse().map_err(|e| format!("--messages {n}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--no-postgres" => options.postgres_messages = 0,
            "--postgres-messages" => {
                let n = args.next().ok_or("--postgres-messages needs N")?;
                options.postgres_messages = n.parse().map_err(|e| format!("--postgres-messages {n}: {e}"))?;
            }
            other => return Err(format!("unknown bench argument {other:?}")),
        }
    }
    Ok(options)
}

pub fn run(args: &[&str]) -> Result<(), String> {
    let options = options(args)?;
    let root = root();
    let target = target_dir();
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;

    step("building the server, its load and the generator (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run_status(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "ses-export-server",
        "--bin",
        "ses-export-server",
        "-p",
        "ses-export-cli",
        "--bin",
        "ses-export",
        "-p",
        "ses-export-tests",
        "--example",
        "server_bench",
        "-p",
        "ses-export-core",
        "--example",
        "bench",
    ]))?;
    let generator = target.join("release/examples/bench");
    let load = target.join("release/examples/server_bench");
    ensure_duckdb()?;
    ensure_wrk()?;
    let duck_script = root.join("xtask/bench/duckdb_bench.py");
    let duck_version = capture(Command::new("python3").args(["-c", "import duckdb; print(duckdb.__version__)"]))?;

    step("the anchor: a bare axum handler under wrk");
    let bare = json(Command::new(&load).arg("bare"))?;

    let mut sets = Vec::new();
    for &messages in &options.sizes {
        for arrival in ARRIVALS {
            let data = dir.join(format!("events-{messages}-{arrival}.jsonl"));
            if data.exists() {
                step(&format!("reusing {}", data.display()));
            } else {
                step(&format!("generating {messages} messages ({arrival})"));
                json(
                    Command::new(&generator)
                        .arg("generate")
                        .arg(messages.to_string())
                        .arg(&data)
                        .arg(arrival),
                )?;
            }
            let bytes = std::fs::metadata(&data).map_err(|e| e.to_string())?.len();

            step(&format!("{messages} {arrival}: DuckDB"));
            let duck_db = fresh(&dir.join(format!("events-{messages}-{arrival}.duckdb")))?;
            let mut duck = serde_json::Map::new();
            duck.insert(
                "ingest".to_owned(),
                json(
                    Command::new("python3")
                        .arg(&duck_script)
                        .arg("ingest")
                        .arg(&duck_db)
                        .arg(&data),
                )?,
            );
            for (workload, _) in DUCK_EXPORTS {
                let script = if workload == "metrics" {
                    "metrics_month"
                } else {
                    workload
                };
                let result = best(
                    (0..QUERY_RUNS).map(|_| json(Command::new("python3").arg(&duck_script).arg(script).arg(&duck_db))),
                )?;
                duck.insert(workload.to_owned(), result);
            }
            duck.insert(
                "warm".to_owned(),
                json(
                    Command::new("python3")
                        .arg(&duck_script)
                        .arg("warm")
                        .arg(&duck_db)
                        .arg(QUERY_RUNS.to_string()),
                )?,
            );

            step(&format!("{messages} {arrival}: the server on SQLite"));
            let server_dir = fresh_dir(&dir.join(format!("server-{messages}-{arrival}")))?;
            let sqlite = json(Command::new(&load).arg("run").arg(&data).arg(&server_dir))?;

            let postgres = if messages <= options.postgres_messages {
                step(&format!("{messages} {arrival}: the server on PostgreSQL"));
                match pg_schema(&generator) {
                    Ok(url) => {
                        let pg_dir = fresh_dir(&dir.join(format!("server-pg-{messages}-{arrival}")))?;
                        json(Command::new(&load).arg("run").arg(&data).arg(&pg_dir).arg(url))
                            .unwrap_or_else(|e| serde_json::json!({"skipped": e}))
                    }
                    Err(e) => serde_json::json!({"skipped": e}),
                }
            } else {
                serde_json::json!({"skipped": format!("PostgreSQL runs up to {} messages", options.postgres_messages)})
            };
            // Above the default size, the data (17 GB of JSON at 10M) and
            // what was made of it go once measured: the disk holds one set
            // at a time.
            if messages > DEFAULT_MESSAGES {
                for file in [&data, &duck_db] {
                    let _ = std::fs::remove_file(file);
                }
                let _ = std::fs::remove_dir_all(&server_dir);
            }
            sets.push(DataSet {
                messages,
                arrival,
                bytes,
                duck: Value::Object(duck),
                sqlite,
                postgres,
            });
        }
    }

    let binaries = binary_sizes(&target.join("release"))?;
    let report = render(&sets, &bare, &duck_version, &binaries, &options);
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, &report).map_err(|e| format!("writing {}: {e}", out.display()))?;
    println!("\n{report}");
    println!("wrote {}", out.display());
    Ok(())
}

struct DataSet {
    messages: u64,
    arrival: &'static str,
    bytes: u64,
    duck: Value,
    sqlite: Value,
    postgres: Value,
}

/// A fresh schema in the PostgreSQL of `SES_EXPORT_BENCH_DATABASE_URL`
/// (the machine's by default); its URL.
fn pg_schema(generator: &Path) -> Result<String, String> {
    let base = std::env::var("SES_EXPORT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let out = json(Command::new(generator).arg("pg-schema").arg(&base))
        .map_err(|e| format!("PostgreSQL at {base} is not reachable ({e})"))?;
    out["url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no schema URL".to_owned())
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(v: &Value) -> String {
    format!("{:.1} ms", f(v) * 1000.0)
}

/// What `cargo install` gives: the release binaries' sizes.
fn binary_sizes(release: &Path) -> Result<String, String> {
    let size = |name: &str| {
        let path = release.join(name);
        std::fs::metadata(&path)
            .map(|m| format!("`{name}` {:.1} MB", m.len() as f64 / 1e6))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    Ok(format!("{}, {}", size("ses-export-server")?, size("ses-export")?))
}

fn render(sets: &[DataSet], bare: &Value, duck_version: &str, binaries: &str, options: &Options) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    let sizes: Vec<String> = options.sizes.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "Made by `cargo xtask bench --messages {}` on {}: {}.\n",
        sizes.join(","),
        today(),
        machine()
    );
    let _ = writeln!(
        out,
        "What is measured is what users meet: the release `ses-export-server` over HTTP, at its default log \
         level (an access-log line per request, into a file), driven by `tests/examples/server_bench.rs`. Ingest: the file in signed `POST /_ses-export/v1/events` bodies of at \
         most 32 MiB, four in flight. Exports: `CreateExportJob`, `GetExportJob` polled every 5 ms, the file \
         downloaded; best of {QUERY_RUNS}, wall time from create to downloaded (the metrics row also gives the \
         job's own time, Completed − Created), in the process that ingested, once the days have settled into \
         segments (the data is from 2024; here a day settles once quiet for 10 s, so during the ingest too). \
         `GetExportJob`: `wrk` with {} connections for {} s, one request signed once. Memory: the server's \
         resident set, idle, at its peak in each phase (exports in the ingesting process, and once more on the \
         server started again), and what the allocator kept after the ingest. The anchors run in the same \
         session on the same file: DuckDB {duck_version} (`read_json` and the derivation of insight records, then \
         the same selections: `xtask/bench/duckdb_bench.py`, best of {QUERY_RUNS}, each in a new process opening \
         the file, and best of {QUERY_RUNS} on one warm connection), and a bare axum handler under the same \
         `wrk` load. Server and load share the machine's two cores.\n",
        bare["get"]["connections"], bare["get"]["seconds"]
    );
    let _ = writeln!(
        out,
        "Binaries as `cargo install` builds them (the release profile, stripped): {binaries}.\n"
    );
    let _ = writeln!(
        out,
        "Data: `crates/core/src/generate.rs` (seed 2026, 30 days). *live*: message ids begin with the send time, as \
         SES makes them; *backfill*: ids random and events shuffled across windows of 100,000 messages, as many \
         Firehose files delivered in parallel arrive.\n"
    );
    for set in sets {
        render_set(&mut out, set, bare);
    }
    out.push_str(ANALYSIS);
    out
}

/// Where the time goes: from `perf record` on the server during each phase
/// (Debian's `linux-perf`), on this machine. Revisit when the tables move.
const ANALYSIS: &str = "\
## Where the time goes

Profiles of the release server under the load above (`perf record -p PID` on the same code built with
`--profile profiling`: the release build with symbols), and what was tried.

- **GetExportJob.** Before this step a quarter of the server's time was context switches: every read
  hopped to a blocking thread and queued behind the job store's one connection (held across fsyncs by
  the workers), and parsed its SQL again. The SQLite job store now answers reads from a cache that
  every change keeps true (one process serves a data dir; a change forgets what it touched while it
  holds the connection), and request ids no longer cost a system call; signing keys are derived once
  per secret, day and region, not on every request. The access log (one line per request, on by
  default) cost a fifth of the throughput while each request wrote its line to stderr itself; a
  writer thread of its own now takes the lines. `server_bench run - DATA_DIR` three times with the
  log on and three with it off, the bare handler beside each: with the log, 0.80 of the log-off
  throughput before (33.8k against 42.0k req/s, bare 121k), 0.83 after (38.6k against 46.4k, bare
  128k). The tables above run with the log on, as users do. Measured (on the earlier machine)
  with `/proc/PID/stat` and
  `perf stat` during the load: the server spends 21 µs of CPU per request against the bare
  handler's 6 µs, and the load generator twice as much per request against it as against the bare
  one (fewer requests per wake-up). Half of the server's time is the kernel: its two workers are
  preempted 13,000 times a second each (1,000 for the bare handler), as each response wakes `wrk`
  on the same two cores; one worker instead of two changes nothing. The rest is spread thin: hyper,
  SigV4 (the canonical request, one HMAC), the JSON body, allocation, the log span; no one part is
  above 5 %. PostgreSQL's job store is shared by several servers, so it has no cache: one round
  trip per call.
- **Message-insights exports.** Settled days are Parquet segments (step 17): the interval is read
  in two parts side by side, each a row group at a time in batches of 8,192 rows; text filters
  are judged once per dictionary value, and a row meets the sample's bar on its `sample_hash`
  column, so only rows that can enter the sample become records. Profiled on 1M records (perf,
  release server): hashing the message id and destination per row was 19 % (now a column),
  Snappy decompression of the id columns 15 % (now stored plain: they do not compress), moving
  250-byte records inside the sample's heap half of a 15 % `memmove` (now boxed), and one
  `matched` counter both scan threads bumped per row (now one per thread). What is left is
  spread: Parquet's decoding of the columns (DuckDB reads only what a query names, vectorised),
  building the kept records, the CSV. DuckDB's warm-connection row has its file cached in its own
  buffer pool; ours reads through the page cache and starts from the catalog each job.
- **Ingest, live.** One writer: SQLite's B-tree inserts and WAL checksums on one thread, parsing on
  another; four requests in flight are no faster than one. DuckDB derives the records in one
  columnar pass with no per-event key; we keep every event under a unique key (a retry counts
  once), update each record in place and keep the rollups, durably. Settling days into segments
  runs beside it (a day at a time, holding the writer while it writes the day's file).
- **Ingest, backfill.** Events and messages are now keyed by send day first (with a narrow
  index from message id to day for `GetMessageInsights`), so a batch's inserts land in the days
  its window holds: 12.8k → 19–21k events/s at 1M; at 10M it falls to about 10k (not profiled
  at that size; the likely cause, unchecked, is that the recent days' trees outgrow what the page
  cache keeps beside 17 GB of input). (That index keyed by a hash of the id made live
  ingest 40 % slower, every message a random insert; keyed by the id, which SES begins with the
  send time, live ingest appends to it.) The profile still shows SQLite's pages: reading them back from the
  OS cache (`_copy_to_iter`, 14 %), the WAL's checksums and writes (12 %), B-tree descents: a
  batch of 5,000 events dirties a 16 KiB page for most of its rows in the index of recent days,
  and each commit writes and syncs them. Tried: a 128 MiB page cache (+7 %, and the memory):
  reverted. What the issue's design names next, and what closes this: an append-only log of
  batches (one row per batch, synced), recent days kept in memory and written out as segments,
  so an event costs an append, not a B-tree update.
- **Metrics export, job time.** The query reads daily rollups (a millisecond); the rest is the
  durability the job promises: the job's row committed, claimed, the file and its folder synced,
  the end committed, each an fsync. Next: a claim that is not synced (a sole server requeues
  `PROCESSING` jobs at start anyway).
- **Memory.** Idle is mostly the allocator's arenas and the binary's pages. mimalloc is built
  without transparent huge pages: with them, every arena region a thread touched was backed by
  2 MiB pages, and one export's resident set was 155 MiB instead of 85. In ingest: each body in
  flight is held whole until its hash is checked (four of up to 32 MiB), one batch parsed ahead of
  the one being written, the writer's 32 MiB page cache, and the compactor's row group being
  encoded. What stays after an ingest is what the allocator has not returned yet, which is why
  exports in the ingesting process peak higher than on a server started again.
- **PostgreSQL.** Settled days are Parquet segments in the cluster's bucket (moto's S3 server
  here), read through each server's cache folder: the same scan as SQLite's, the day's late rows
  from the table merged in. The first PostgreSQL run with segments took 3.2 s an export: with a
  month of rows just moved out, `ses_insights` held a million dead tuples and statistics that
  still counted them, so the planner read each day's (now few) late rows by scanning the whole
  table (100 ms a day, against 6 ms by the index). The compactor now vacuums it once 50,000 rows
  have moved (0.2 s an export). Ingest, per statement (`pg_stat_statements`, 1M messages, a
  later run than the table): live, the events insert is 99 ms a batch of ~4,600 events, the
  messages insert 49, the records' upsert 41, their flags' lookup 21, the rollups 10; backfill
  spends 759 ms a batch *waiting* on the per-message locks (the four bodies in flight share
  messages, so their transactions run one after another) and 300 ms in its statements, the flags'
  lookup first (104 ms, 4,800 blocks read: random keys). Tried and measured, and not kept: `COPY`
  into a staging table and one merge (5,000 events: 6 ms to copy + 72 ms to merge, against 81–96 ms
  for the same insert from arrays; the cost is the index, 6 µs a row, and `ON CONFLICT`'s second
  descent, not the transfer); keys by send day first for events and messages (a migration and a
  narrow id index, as SQLite has): live ingest fell 43k → 35k events/s and backfill 15.6k →
  12.9k (the id index is one more random insert per message; the days' trees were not what missed
  the cache). Group commit of an account's bodies in flight would remove the waits but not the
  statements' 300 ms; what would move it is fewer index entries per event: the batch log the
  issue designs for SQLite (a batch's events as one row, deduplicated by a narrow key).
";

fn render_set(out: &mut String, set: &DataSet, bare: &Value) {
    let (s, d, p) = (&set.sqlite, &set.duck, &set.postgres);
    let events = f(&s["ingest"]["accepted"]);
    let _ = writeln!(
        out,
        "## {} messages, {} ({} events, {:.0} MiB of JSON Lines)\n",
        set.messages,
        set.arrival,
        events,
        set.bytes as f64 / (1024.0 * 1024.0)
    );
    if s.get("exports").is_none() {
        let _ = writeln!(out, "The SQLite run failed: {s}\n");
        return;
    }
    let _ = writeln!(
        out,
        "| work | server (SQLite) | DuckDB / bare axum | ratio | DuckDB, warm connection | ratio | server (PostgreSQL) |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let duck_rate = events / f(&d["ingest"]["seconds"]);
    let pg_ingest = if p.get("ingest").is_some() {
        format!("{:.0} ev/s", f(&p["ingest"]["events_per_second"]))
    } else {
        "skipped".to_owned()
    };
    let _ = writeln!(
        out,
        "| ingest | {:.0} ev/s | {:.0} ev/s | {:.2}× | | | {pg_ingest} |",
        f(&s["ingest"]["events_per_second"]),
        duck_rate,
        f(&s["ingest"]["events_per_second"]) / duck_rate,
    );
    let settle = &s["settle"];
    let _ = writeln!(
        out,
        "| settling after the ingest (days into segments) | {:.1} s, {} files, {:.0} MiB | | | | | |",
        f(&settle["seconds"]),
        settle["segments"],
        f(&settle["bytes"]) / (1024.0 * 1024.0),
    );
    for (key, name) in DUCK_EXPORTS {
        let ours = &s["exports"][key];
        let theirs = &d[key];
        let warm_key = if key == "metrics" { "metrics_month" } else { key };
        let warm = &d["warm"][warm_key];
        let pg = if p.get("exports").is_some() {
            ms(&p["exports"][key]["seconds"])
        } else {
            "skipped".to_owned()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.2}× | {} | {:.2}× | {pg} |",
            ms(&ours["seconds"]),
            ms(&theirs["seconds"]),
            f(&ours["seconds"]) / f(&theirs["seconds"]),
            ms(&warm["seconds"]),
            f(&ours["seconds"]) / f(&warm["seconds"]),
        );
    }
    let metrics = &s["exports"]["metrics"];
    let _ = writeln!(
        out,
        "| metrics export, job time (Completed − Created) | {} | {} | {:.2}× | {} | {:.2}× | {} |",
        ms(&metrics["job_seconds"]),
        ms(&d["metrics"]["seconds"]),
        f(&metrics["job_seconds"]) / f(&d["metrics"]["seconds"]),
        ms(&d["warm"]["metrics_month"]["seconds"]),
        f(&metrics["job_seconds"]) / f(&d["warm"]["metrics_month"]["seconds"]),
        if p.get("exports").is_some() {
            ms(&p["exports"]["metrics"]["job_seconds"])
        } else {
            "skipped".to_owned()
        },
    );
    let get = &s["get_export_job"];
    let pg_get = if p.get("get_export_job").is_some() {
        format!(
            "{:.0} req/s, p99 {:.2} ms",
            f(&p["get_export_job"]["rps"]),
            f(&p["get_export_job"]["p99_ms"])
        )
    } else {
        "skipped".to_owned()
    };
    let _ = writeln!(
        out,
        "| GetExportJob, SigV4 verified | {:.0} req/s, p99 {:.2} ms | {:.0} req/s, p99 {:.2} ms | {:.2}× | | | {pg_get} |",
        f(&get["rps"]),
        f(&get["p99_ms"]),
        f(&bare["get"]["rps"]),
        f(&bare["get"]["p99_ms"]),
        f(&get["rps"]) / f(&bare["get"]["rps"]),
    );
    let memory = |m: &Value| {
        format!(
            "{:.1} / {:.0} / {:.0} / {:.0} ({:.0}) MiB",
            f(&m["idle"]),
            f(&m["export_peak"]),
            f(&m["export_peak_restarted"]),
            f(&m["ingest_peak"]),
            f(&m["after_ingest"]),
        )
    };
    let pm = &p["memory_mib"];
    let _ = writeln!(
        out,
        "| server memory: idle / peak in exports, ingesting process / restarted / peak in ingest (kept after it) | {} | bare axum idle {:.1} MiB | | | | {} |",
        memory(&s["memory_mib"]),
        f(&bare["idle_mib"]),
        if pm.is_object() {
            memory(pm)
        } else {
            "skipped".to_owned()
        },
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Both sides did the same work (rows the exports matched and wrote):\n"
    );
    for (key, name) in DUCK_EXPORTS {
        let _ = writeln!(
            out,
            "- {name}: server processed {} and exported {}; DuckDB matched {} and returned {}",
            s["exports"][key]["processed"],
            s["exports"][key]["exported"],
            d[key]["matched"]
                .as_u64()
                .map_or_else(|| d[key]["processed"].to_string(), |m| m.to_string()),
            d[key]["exported"]
                .as_u64()
                .map_or_else(|| d[key]["rows"].to_string(), |m| m.to_string()),
        );
    }
    let _ = writeln!(
        out,
        "- ingest: server accepted {} events ({} duplicates, {} rejected); DuckDB derived {} insight records\n",
        s["ingest"]["accepted"], s["ingest"]["duplicates"], s["ingest"]["rejected"], d["ingest"]["records"]
    );
    if let Some(skipped) = p.get("skipped") {
        let _ = writeln!(out, "PostgreSQL: skipped ({skipped}).\n");
    }
}

fn fresh_dir(path: &Path) -> Result<PathBuf, String> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    Ok(path.to_owned())
}

fn ensure_wrk() -> Result<(), String> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    step("installing wrk (Debian)");
    run_status(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))
        .map_err(|e| format!("wrk is needed for the API row: {e}"))
}

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
        if best.as_ref().is_none_or(|b| f(&run["seconds"]) < f(&b["seconds"])) {
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
