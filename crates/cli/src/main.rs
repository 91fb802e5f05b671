//! `ses-export`: the command line for SES v2 export jobs.

fn main() -> std::process::ExitCode {
    ses_export_cli::main()
}
