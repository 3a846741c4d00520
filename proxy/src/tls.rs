//! TLS settings: the proxy's certificate for clients, and CA verification of backends.
//!
//! rustls with the `ring` provider: no OpenSSL, no C toolchain. The configs are built once when
//! the configuration file is loaded, so a missing or unreadable file is a config error naming
//! its key (and `rwproxy check-config` catches it) rather than a failure on the first client.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS setting could not be used; `key` is the config key the file came from.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

fn fail(key: &'static str, message: String) -> TlsError {
    TlsError { key, message }
}

/// The proxy's own TLS identity for clients (`ssl-cert`, `ssl-key`, `ssl-ca`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verifies client certificates that clients choose to present; clients without one are
    /// still admitted, as by a server whose accounts do not `REQUIRE X509`.
    pub ca: Option<PathBuf>,
    pub config: Arc<ServerConfig>,
}

/// Two settings are the same when they name the same files; the built config is derived.
impl PartialEq for ServerTls {
    fn eq(&self, o: &Self) -> bool {
        self.cert == o.cert && self.key == o.key && self.ca == o.ca
    }
}

/// TLS towards backends (`backend-ssl-ca`): every backend's certificate must chain to the CA
/// and name the host of its address.
#[derive(Debug, Clone)]
pub struct BackendTls {
    pub ca: PathBuf,
    pub config: Arc<ClientConfig>,
}

impl PartialEq for BackendTls {
    fn eq(&self, o: &Self) -> bool {
        self.ca == o.ca
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            fail(
                key,
                format!("cannot read certificates from {}: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(fail(
            key,
            format!("no PEM certificate in {}", path.display()),
        ));
    }
    Ok(certs)
}

fn roots(key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(key, path)? {
        store.add(c).map_err(|e| {
            fail(
                key,
                format!("bad CA certificate in {}: {e}", path.display()),
            )
        })?;
    }
    Ok(Arc::new(store))
}

impl ServerTls {
    pub fn load(cert: PathBuf, key: PathBuf, ca: Option<PathBuf>) -> Result<Self, TlsError> {
        let chain = certs("ssl-cert", &cert)?;
        let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            fail(
                "ssl-key",
                format!("cannot read a PEM private key from {}: {e}", key.display()),
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("ssl-cert", e.to_string()))?;
        let builder = match &ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    roots("ssl-ca", ca_path)?,
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| fail("ssl-ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, private).map_err(|e| {
            fail(
                "ssl-key",
                format!(
                    "{} does not go with the certificate in {}: {e}",
                    key.display(),
                    cert.display()
                ),
            )
        })?;
        Ok(ServerTls {
            cert,
            key,
            ca,
            config: Arc::new(config),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

impl BackendTls {
    pub fn load(ca: PathBuf) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("backend-ssl-ca", e.to_string()))?
            .with_root_certificates(roots("backend-ssl-ca", &ca)?)
            .with_no_client_auth();
        Ok(BackendTls {
            ca,
            config: Arc::new(config),
        })
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}
