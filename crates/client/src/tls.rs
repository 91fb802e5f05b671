//! TLS for `https` endpoints: rustls with ring (the workspace's one TLS
//! stack), trusting the platform's roots, or only the certificates of a CA
//! bundle (`--ca-bundle`, `AWS_CA_BUNDLE`), as the AWS CLI does.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::ring::default_provider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::Error;

/// The TLS configuration for a client: `ca_bundle`'s certificates when
/// given (and only them), else the platform's trust roots.
pub(crate) fn client_config(ca_bundle: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    match ca_bundle {
        Some(path) => {
            let certs = read_certificates(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Config(format!(
                    "the CA bundle {} holds no certificate rustls can use",
                    path.display()
                )));
            }
        }
        None => {
            // A store that fails to load is not fatal while another loads:
            // a bad file among /etc/ssl/certs should not stop the client.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("setting up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The HTTP client for `https` and `http` endpoints: TLS as
/// [`client_config`] says, with `ca_bundle` or else `AWS_CA_BUNDLE`.
pub(crate) fn http_client(ca_bundle: Option<&Path>) -> Result<reqwest::Client, Error> {
    let from_env = std::env::var_os("AWS_CA_BUNDLE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let ca_bundle = ca_bundle.or(from_env.as_deref());
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .tls_backend_preconfigured(client_config(ca_bundle)?)
        .build()
        .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))
}

/// The certificates of a PEM file; a file with none is an error that names it.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let text =
        std::fs::read(path).map_err(|e| Error::Config(format!("reading the CA bundle {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("the CA bundle {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "the CA bundle {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Whether `error` (or what caused it) is a TLS certificate problem, and
/// which: the sentence to show the user.
pub(crate) fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(why) => Some(format!(
                    "the server's TLS certificate is not trusted: {}",
                    certificate_error(why)
                )),
                other => Some(format!("the TLS handshake failed: {other}")),
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = certificate_problem(inner)
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn certificate_error(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::UnknownIssuer => "it is signed by a certificate authority this client does not trust".to_owned(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it was not issued for this host name or address".to_owned()
        }
        E::Expired | E::ExpiredContext { .. } => "it has expired".to_owned(),
        E::NotValidYet | E::NotValidYetContext { .. } => "it is not valid yet".to_owned(),
        E::Revoked => "it has been revoked".to_owned(),
        E::BadSignature => "its signature does not verify".to_owned(),
        other => {
            let text = format!("{other:?}");
            if text.contains("CaUsedAsEndEntity") {
                // `openssl req -x509` makes such a certificate by default.
                "it is a CA certificate serving as the server's own; make the server's certificate with \
                 basicConstraints CA:FALSE, signed by the CA you trust"
                    .to_owned()
            } else {
                text
            }
        }
    }
}
