//! The SES v2 export-jobs API inside an axum application of your own:
//! your routes beside it, and the callers it accepts from a credential
//! source of yours (here, keys kept in memory; a database or a secrets
//! manager would do the same) instead of the TOML file.
//!
//! ```sh
//! cargo run -p ses-export-server --example embed
//! # then, in another terminal:
//! curl http://127.0.0.1:4600/hello
//! AWS_ACCESS_KEY_ID=AKIAEMBEDDED AWS_SECRET_ACCESS_KEY=embedded-secret \
//!   ses-export --endpoint-url http://127.0.0.1:4600 list-export-jobs
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use ses_export_core::AccountId;
use ses_export_core::destination::BucketAccess;
use ses_export_server::config::Config;
use ses_export_server::credentials::{CredentialSource, Identity};

/// Callers known to this application.
#[derive(Debug)]
struct MyCallers(HashMap<String, Arc<Identity>>);

impl CredentialSource for MyCallers {
    fn identity(&self, access_key: &str) -> Option<Arc<Identity>> {
        self.0.get(access_key).cloned()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The server's own settings, as its flags would give them.
    let data_dir = std::env::temp_dir().join("ses-export-embedded");
    let config = Config::parse_from([
        "embedded",
        "--data-dir",
        data_dir.to_str().ok_or("a UTF-8 temporary folder")?,
    ]);
    let mut state = ses_export_server::build_state(&config).await?;
    let account: AccountId = "123456789012".parse()?;
    state.credentials = Arc::new(MyCallers(HashMap::from([(
        "AKIAEMBEDDED".to_owned(),
        Arc::new(Identity::new(
            "embedded-secret",
            account,
            BucketAccess::only(Vec::new())?,
        )),
    )])));
    // Jobs run in the workers the service hands out.
    let workers = Arc::new(state.service.workers());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(workers.run(2, stopped));

    let app = Router::new()
        .route("/hello", get(|| async { "your own route, beside the SES API\n" }))
        .merge(ses_export_server::app::app(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4600").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
