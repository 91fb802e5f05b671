//! Writes the `ses-export` man pages (section 1) into a folder: one for the
//! command and one per subcommand (`ses-export-list-export-jobs.1`, ...).
//! `cargo xtask man` runs it: `cargo run -p ses-export-cli --example cli_man -- DIR`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn write(dir: &Path, command: clap::Command, name: &str) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    println!("{}", dir.join(format!("{name}.1")).display());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/man"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let command = ses_export_cli::Cli::command();
    write(&dir, command.clone(), "ses-export")?;
    for sub in command.get_subcommands() {
        // clap names commands with `&'static str`; a run writes a dozen pages.
        let name: &'static str = Box::leak(format!("ses-export-{}", sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name).version(env!("CARGO_PKG_VERSION"));
        write(&dir, page, name)?;
    }
    Ok(())
}
