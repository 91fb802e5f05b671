//! What the PostgreSQL tests share: the database from
//! `SES_EXPORT_TEST_DATABASE_URL`, a schema per test, dropped after.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The database, or `None` (with a note) when none is configured outside CI.
pub fn database_url() -> Option<String> {
    match std::env::var("SES_EXPORT_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "SES_EXPORT_TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipping: set SES_EXPORT_TEST_DATABASE_URL=postgres://... to run the PostgreSQL suites");
            None
        }
    }
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

/// A fresh schema; returns a URL whose connections use it.
pub async fn schema(base: &str, test: &str) -> String {
    let name = format!(
        "t_{}_{test}_{}_{}",
        std::process::id(),
        SCHEMAS.fetch_add(1, Ordering::Relaxed),
        nanos()
    );
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{name}")
}

/// The schema a URL of [`schema`] uses.
pub fn schema_name(url: &str) -> &str {
    url.rsplit_once("search_path%3D").map_or("public", |(_, name)| name)
}

/// A fresh schema made by `ses_export_core::backend::postgres::older` into
/// what an older version of this crate kept at schema `version`, holding
/// what the schema of `from` (a URL of [`schema`]) holds; returns its URL.
pub async fn older(base: &str, test: &str, version: usize, from: &str) -> String {
    let url = schema(base, test).await;
    ses_export_core::backend::postgres::older::database(&url, version, schema_name(from))
        .await
        .expect("an older database");
    url
}

/// A plain connection to a URL of [`schema`], which migrates nothing.
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Drops the schemas this test process made (runs never see each other's
/// data, and the database does not fill up with old runs).
pub async fn drop_schemas(base: &str, test: &str) {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let prefix = format!("t\\_{}\\_{test}\\_%", std::process::id());
    let rows = client
        .query("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", &[&prefix])
        .await
        .expect("list schemas");
    for row in rows {
        let name: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .await;
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
