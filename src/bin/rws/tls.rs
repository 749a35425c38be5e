//! TLS for `rws`: the client's rustls config from `--ca`, `--cert`/`--key`
//! and `-k/--insecure`, and the server's from `--tls-cert`/`--tls-key`.
//! Certificates and keys are PEM files; every config names its crypto
//! provider (`ring`) instead of relying on a process default.

use std::{path::Path, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};

/// What `rws connect` says on stderr with `--insecure`: loud, because a
/// connection that checks no certificate can be read and changed by anyone
/// on the path.
pub(crate) const INSECURE_WARNING: &str = "rws: WARNING: --insecure: the server's TLS \
certificate is NOT checked; anyone on the network path can read and change this connection";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The client's TLS options (`rws connect`).
pub(crate) struct ClientTls<'a> {
    /// `--ca`: trust these roots instead of the built-in (Mozilla) ones.
    pub(crate) ca: Option<&'a Path>,
    /// `--cert` and `--key`: present this client certificate.
    pub(crate) identity: Option<(&'a Path, &'a Path)>,
    /// `-k/--insecure`: check no server certificate at all.
    pub(crate) insecure: bool,
}

/// The client config the flags ask for; `None` when they ask for nothing,
/// so the library keeps its default (webpki roots).
pub(crate) fn client_config(
    tls: &ClientTls<'_>,
) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if tls.ca.is_none() && tls.identity.is_none() && !tls.insecure {
        return Ok(None);
    }
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match tls.ca {
            Some(path) => {
                for cert in certificates(path, "--ca")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match tls.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert, "--cert")?, private_key(key, "--key")?)
            .map_err(|e| format!("--cert/--key: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The server config presenting the certificate chain in `cert` (PEM, the
/// server's own first) with the key in `key` (`rws serve`).
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = certificates(cert, "--tls-cert")?;
    let key = private_key(key, "--tls-key")?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))
}

/// `--insecure`: accepts any server certificate. Signatures are still
/// checked (the handshake needs them), so only who the server is goes
/// unverified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
