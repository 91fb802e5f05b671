//! `cargo xtask`: the project's own tasks, as Rust, so they run wherever
//! cargo does. It depends on none of the crates it generates.

mod bench;
mod codegen;
mod model;
mod proof;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  model --from FILE   trim AWS's full SES v2 model (botocore's service-2.json)
                      into crates/model/aws-model/
  codegen [--check]   generate crates/model's code from the vendored model;
                      --check fails if the committed code differs
  bench [--messages N[,N...]] [--postgres-messages N | --no-postgres]
                      measure the release server over HTTP (ingest, exports,
                      GetExportJob, memory) on SQLite and PostgreSQL for each
                      size (default 1,000,000 messages; PostgreSQL up to
                      --postgres-messages, default 1,000,000) and arrival order,
                      beside DuckDB and a bare axum handler; writes
                      docs/benchmarks.md
  fuzz [--inputs N] [--seed S]
                      feed N mutated requests, event lines, signatures and
                      download paths (default 10,000,000) to the server in
                      process; fails on a panic or a 5xx
  man [DIR]           write the man pages of ses-export (and each of its
                      commands) and ses-export-server into DIR (target/man)
  soak [--seconds N] [--clients C]
                      run the release server under C clients (default 64)
                      for N seconds (default 60), every operation mixed;
                      fails on a 5xx or on memory or open files growing
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["model", "--from", file] => model::trim(Path::new(file)),
        ["codegen"] => codegen::run(false),
        ["codegen", "--check"] => codegen::run(true),
        ["bench", rest @ ..] => bench::run(rest),
        ["fuzz", rest @ ..] => proof::fuzz(rest),
        ["man"] => man(&target_dir().join("man")),
        ["man", dir] => man(Path::new(dir)),
        ["soak", rest @ ..] => proof::soak(rest),
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown arguments {args:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The man pages, rendered by the binaries' crates (each has a man-page
/// example on clap_mangen), so this crate depends on none of them.
fn man(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for (package, example) in [("ses-export-cli", "cli_man"), ("ses-export-server", "server_man")] {
        let status = std::process::Command::new(&cargo)
            .args(["run", "--quiet", "-p", package, "--example", example, "--"])
            .arg(dir)
            .current_dir(root())
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("{package}'s man example failed"));
        }
    }
    Ok(())
}

/// The workspace root, whatever directory the task was started from.
///
/// `cargo xtask` (`cargo run`) names this package's folder at run time;
/// that comes first, because the folder compiled in is the one of the
/// checkout that built the binary, and a target dir shared between
/// checkouts hands that binary to the others.
fn root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Where the vendored, trimmed model lives.
fn model_dir() -> PathBuf {
    root().join("crates/model/aws-model")
}

const MODEL_FILE: &str = "sesv2-2019-09-27.export-jobs.json";

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}
