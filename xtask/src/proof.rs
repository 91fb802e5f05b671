//! `cargo xtask fuzz` and `cargo xtask soak`: the proof that docs/security.md asks
//! for. Both run release builds of the project's own harnesses
//! (`tests/it/fuzz.rs`, `tests/examples/soak.rs`) and print what they
//! found; docs/security.md records the runs with their commands.

use std::process::Command;
use std::time::Instant;

use crate::{root, target_dir};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn number(args: &[&str], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| *a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}")),
    }
}

fn check_flags(args: &[&str], known: &[&str]) -> Result<(), String> {
    for (i, arg) in args.iter().enumerate() {
        let is_value = i > 0 && known.contains(&args[i - 1]);
        if !is_value && !known.contains(arg) {
            return Err(format!("unknown argument {arg:?} (known: {known:?})"));
        }
    }
    Ok(())
}

/// `fuzz [--inputs N] [--seed S]`: N inputs (default 10,000,000) through
/// the fuzz harness, built in release.
pub fn fuzz(args: &[&str]) -> Result<(), String> {
    check_flags(args, &["--inputs", "--seed"])?;
    let inputs = number(args, "--inputs", 10_000_000)?;
    let seed = number(args, "--seed", 1)?;
    let started = Instant::now();
    let status = Command::new(cargo())
        .current_dir(root())
        .args([
            "test",
            "--release",
            "-p",
            "ses-export-tests",
            "--test",
            "it",
            "--",
            "fuzz::",
            "--nocapture",
        ])
        .env("SES_EXPORT_FUZZ_INPUTS", inputs.to_string())
        .env("SES_EXPORT_FUZZ_SEED", seed.to_string())
        .status()
        .map_err(|e| format!("running cargo test: {e}"))?;
    println!(
        "xtask fuzz: {inputs} inputs, seed {seed}, {:.0} s including the build",
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err("the fuzz run found a panic or a 5xx (see above)".to_owned())
    }
}

/// `soak [--seconds N] [--clients C]`: the release server under C clients
/// (default 64) for N seconds (default 60).
pub fn soak(args: &[&str]) -> Result<(), String> {
    check_flags(args, &["--seconds", "--clients"])?;
    let seconds = number(args, "--seconds", 60)?;
    let clients = number(args, "--clients", 64)?;
    let build = |what: &[&str]| -> Result<(), String> {
        let status = Command::new(cargo())
            .current_dir(root())
            .args(["build", "--quiet", "--release"])
            .args(what)
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build {what:?} failed"))
        }
    };
    build(&["-p", "ses-export-server", "--bin", "ses-export-server"])?;
    build(&["-p", "ses-export-tests", "--example", "soak"])?;
    let target = target_dir();
    let status = Command::new(target.join("release/examples/soak"))
        .args([seconds.to_string(), clients.to_string()])
        .status()
        .map_err(|e| format!("running the soak: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the soak saw an undesigned answer or growth (see above)".to_owned())
    }
}
