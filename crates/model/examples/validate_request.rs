//! Checks a `CreateExportJob` request body the way the server does before
//! it does anything else (types, required members, lengths, patterns and
//! enums from AWS's model), in a service of your own: a gateway that
//! refuses what SES would refuse, without a round trip.
//!
//! ```sh
//! cargo run -p ses-export-model --example validate_request -- request.json
//! echo '{"ExportDataSource": {}}' | cargo run -p ses-export-model --example validate_request
//! ```
//!
//! Exit code 0 with the parsed request printed back, or 1 with the message
//! a 400 `BadRequestException` would carry.

use std::io::Read;
use std::process::ExitCode;

use ses_export_model::parse_input;
use ses_export_model::types::CreateExportJobRequest;

fn main() -> ExitCode {
    let mut body = Vec::new();
    let read = match std::env::args().nth(1) {
        Some(path) => std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut body)),
        None => std::io::stdin().read_to_end(&mut body),
    };
    if let Err(e) = read {
        eprintln!("reading the request: {e}");
        return ExitCode::FAILURE;
    }
    // CreateExportJob has no labels in its path.
    match parse_input::<CreateExportJobRequest>(&body, &[]) {
        Ok(request) => {
            println!("valid: {}", serde_json::to_string(&request).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("BadRequestException: {e}");
            ExitCode::FAILURE
        }
    }
}
