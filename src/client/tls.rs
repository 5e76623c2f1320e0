//! The rustls client configuration: which certificate authorities a client trusts.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::{Error, ErrorKind};

/// Build the configuration. Reads files (the system store, `SSL_CERT_FILE`, extra CA files),
/// so the caller runs it off the core.
///
/// Roots: the system's store as OpenSSL finds it (`rustls-native-certs`: `/etc/ssl/certs`
/// and the like), or, as in OpenSSL, only the file named by `SSL_CERT_FILE` and the
/// directories named by `SSL_CERT_DIR` when those are set; plus every PEM file in `extra`.
pub(crate) fn config(
    system_roots: bool,
    extra: &[PathBuf],
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    if system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("client: reading CA certificates: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::warn!("client: {ignored} CA certificates could not be used ({added} were)");
        }
    }
    for path in extra {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| {
                Error::with(
                    ErrorKind::Tls,
                    format!("reading CA file {}: {e}", path.display()),
                )
            })?;
        for c in certs {
            roots.add(c).map_err(|e| {
                Error::with(
                    ErrorKind::Tls,
                    format!("CA certificate in {}: {e}", path.display()),
                )
            })?;
        }
    }
    if roots.is_empty() {
        return Err(Error::with(
            ErrorKind::Tls,
            "no CA certificate to verify servers with (system store empty, no CA file)",
        ));
    }
    // rustls 0.23.48 deprecates the ring provider for lacking post-quantum key exchange;
    // aws-lc-rs has it but needs cmake and a C toolchain at build time: a choice for later.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with(ErrorKind::Tls, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
