//! TLS for the MQTT listener, with X.509 device certificates.
//!
//! With a client CA configured, every device must present a certificate
//! that chains to it; the certificate's subject CN (or, without one, its
//! first DNS or URI SAN) becomes the device identity that topic policies
//! compare against.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// PEM material for the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Server private key (PEM).
    pub key_pem: Vec<u8>,
    /// CA certificates (PEM) that device certificates must chain to; `None` = no client certificates.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Builds the rustls server configuration.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = CertificateDer::pem_slice_iter(&files.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("mqtt tls cert: {e}"))?;
    if certs.is_empty() {
        return Err("mqtt tls cert holds no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key_pem).map_err(|e| format!("mqtt tls key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("mqtt tls client_ca: {e}"))?;
                roots.add(cert).map_err(|e| format!("mqtt tls client_ca: {e}"))?;
            }
            if roots.is_empty() {
                return Err("mqtt tls client_ca holds no PEM certificate".into());
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("mqtt tls client_ca: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // No ALPN list: AWS-style clients offer `x-amzn-mqtt-ca`, others none; rustls would refuse a mismatch.
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("mqtt TLS certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(config))
}

/// The device identity of a verified certificate: subject CN, else the first DNS or URI SAN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Some(cn) = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        return Some(cn.to_string());
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(s) | x509_parser::extensions::GeneralName::URI(s) => {
            Some((*s).to_string())
        }
        _ => None,
    })
}
