//! PostgreSQL over TLS as libpq's `sslmode` and `sslrootcert` say, against
//! the database in `SES_EXPORT_TEST_DATABASE_URL` with SSL on and its CA in
//! `SES_EXPORT_TEST_PG_SSL_ROOT` (`.ci/postgres-ssl.sh` sets both up).

mod common;

use std::process::Command;

use ses_export_core::backend::postgres;

/// Whether the connection a pool hands out is encrypted.
async fn encrypted(url: &str) -> Result<bool, String> {
    let pool = postgres::connect(url, 1).await.map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn with(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

#[tokio::test]
async fn verify_full_trusts_the_servers_ca_and_nothing_else() {
    let Some(base) = common::database_url() else { return };
    let root = match std::env::var("SES_EXPORT_TEST_PG_SSL_ROOT") {
        Ok(root) => root,
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "SES_EXPORT_TEST_PG_SSL_ROOT must be set in CI (.ci/postgres-ssl.sh)"
            );
            eprintln!("skipping: run .ci/postgres-ssl.sh and set SES_EXPORT_TEST_PG_SSL_ROOT");
            return;
        }
    };
    let url = common::schema(&base, "tls").await;

    let verified = with(&url, &format!("sslmode=verify-full&sslrootcert={root}"));
    assert_eq!(encrypted(&verified).await, Ok(true), "verify-full with the server's CA");
    let by_name = verified.replace("@127.0.0.1", "@localhost");
    assert_eq!(
        encrypted(&by_name).await,
        Ok(true),
        "the certificate names localhost too"
    );
    let chain_only = with(&url, &format!("sslmode=verify-ca&sslrootcert={root}"));
    assert_eq!(encrypted(&chain_only).await, Ok(true), "verify-ca");
    assert_eq!(
        encrypted(&with(&url, "sslmode=require")).await,
        Ok(true),
        "require: encrypted"
    );
    assert_eq!(
        encrypted(&with(&url, "sslmode=prefer")).await,
        Ok(true),
        "prefer: encrypted when the server offers it"
    );
    assert_eq!(
        encrypted(&with(&url, "sslmode=disable")).await,
        Ok(false),
        "disable: plain"
    );
    // The same server under a name its certificate does not give: verify-ca
    // checks only the chain, verify-full the name too.
    let misnamed = url.replace("@127.0.0.1", "@not-in-the-certificate.invalid");
    let misnamed = with(&misnamed, "hostaddr=127.0.0.1");
    assert_eq!(
        encrypted(&with(&misnamed, &format!("sslmode=verify-ca&sslrootcert={root}"))).await,
        Ok(true),
        "verify-ca under another name"
    );
    let refused = encrypted(&with(&misnamed, &format!("sslmode=verify-full&sslrootcert={root}")))
        .await
        .expect_err("verify-full under a name the certificate does not give");
    assert!(refused.contains("not valid for name"), "{refused}");

    // Another CA: refused, and the error says why.
    let dir = tempfile::tempdir().expect("temp dir");
    let other = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=someone else's CA", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for mode in ["verify-full", "verify-ca"] {
        let wrong = with(&url, &format!("sslmode={mode}&sslrootcert={}", other.display()));
        let refused = encrypted(&wrong)
            .await
            .expect_err("a CA the server's certificate is not from");
        assert!(refused.contains("certificate"), "{mode}: {refused}");
    }
    // verify-full without any root is a configuration error, said before connecting.
    let no_root = with(&url, "sslmode=verify-full");
    if std::env::var_os("HOME").is_none_or(|home| !std::path::Path::new(&home).join(".postgresql/root.crt").exists()) {
        assert!(encrypted(&no_root).await.expect_err("no root").contains("sslrootcert"));
    }
    common::drop_schemas(&base, "tls").await;
}
