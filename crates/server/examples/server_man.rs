//! Writes the `ses-export-server` man page (section 1) into a folder.
//! `cargo xtask man` runs it: `cargo run -p ses-export-server --example server_man -- DIR`.

use std::path::PathBuf;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/man"), PathBuf::from);
    std::fs::create_dir_all(&dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(ses_export_server::config::Config::command()).render(&mut page)?;
    let path = dir.join("ses-export-server.1");
    std::fs::write(&path, page)?;
    println!("{}", path.display());
    Ok(())
}
