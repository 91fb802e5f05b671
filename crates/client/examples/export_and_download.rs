//! Creates a metrics export on any SES v2 endpoint (AWS itself, or a
//! ses-export-server), waits for it and downloads the file, with
//! credentials and region from the environment and the shared AWS files.
//!
//! ```sh
//! # Against a local server (access key `test`, secret `test`):
//! AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   cargo run -p ses-export-client --example export_and_download -- http://127.0.0.1:4599
//! # Against AWS (VDM must be on for the account):
//! cargo run -p ses-export-client --example export_and_download -- https://email.us-east-1.amazonaws.com
//! ```

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ses_export_client::model::types::CreateExportJobRequest;
use ses_export_client::{Client, ClientConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4599".to_owned());
    let client = Client::new(ClientConfig::local(&endpoint))?;

    // The last seven whole days, SEND volume and DELIVERY rate by ISP.
    let today = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 86_400 * 86_400;
    let request: CreateExportJobRequest = serde_json::from_value(serde_json::json!({
        "ExportDataSource": {"MetricsDataSource": {
            "Dimensions": {"ISP": ["*"]},
            "Namespace": "VDM",
            "Metrics": [{"Name": "SEND", "Aggregation": "VOLUME"}, {"Name": "DELIVERY", "Aggregation": "RATE"}],
            "StartDate": today - 7 * 86_400,
            "EndDate": today,
        }},
        "ExportDestination": {"DataFormat": "CSV"},
    }))?;
    let created = client.create_export_job(request).await?;
    let job_id = created.job_id.ok_or("no JobId in the answer")?;
    println!("created {job_id}");

    let job = client
        .wait_for_job(&job_id, Duration::from_secs(1), |job| {
            println!("{job_id}: {:?}", job.job_status);
        })
        .await?;
    let url = job
        .export_destination
        .and_then(|d| d.s3_url)
        .ok_or("the job ended without a file")?;
    let path = format!("{job_id}.csv");
    let bytes = client.download(&url, Path::new(&path)).await?;
    println!("downloaded {bytes} bytes to {path}");
    Ok(())
}
