//! TLS for the link: TLS 1.3 only, `rustls` with the `ring` provider, the core's self-signed
//! certificate accepted by its SHA-256 pin instead of a CA chain.
//!
//! Owns both configurations: [`server_config`] (the core's key pair, no client certificate:
//! a remote module authenticates with its secret inside the TLS channel) and
//! [`client_config`] (the pin check, [`PinVerifier`]). Never opens a socket.
//!
//! Why a pin and not a CA: the operator hands the credential file over, so the file can carry
//! exactly which certificate to trust; no name, no CA, no expiry to manage, and a stolen CA
//! key elsewhere cannot impersonate the core. The signature over the handshake is still
//! checked against the pinned certificate's key, so holding the certificate alone (it is
//! public) does not make a server the core.

use crate::credential::Pin;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// The crypto provider of every link: `ring` (pure Rust and assembly, no cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The core's side: its certificate and key (DER), TLS 1.3 only, no client certificates.
///
/// # Errors
/// The key does not match the certificate or is not a supported type.
pub fn server_config(cert: Vec<u8>, key: Vec<u8>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let key = PrivateKeyDer::try_from(key)
        .map_err(|e| rustls::Error::General(format!("the core's TLS key: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert)], key)?;
    Ok(Arc::new(config))
}

/// The remote module's side: TLS 1.3 only, the server must present the certificate `pin`
/// names (and prove it holds its key).
///
/// # Errors
/// Only if the provider lacked TLS 1.3, which `ring`'s never does.
pub fn client_config(pin: Pin) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(PinVerifier {
        pin,
        provider: Arc::clone(&provider),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name sent in the ClientHello. The pin, not the name, identifies the core.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("logos-core").unwrap_or(ServerName::IpAddress(
        std::net::IpAddr::from([127, 0, 0, 1]).into(),
    ))
}

/// Accepts exactly the pinned certificate, whatever its names and dates.
#[derive(Debug)]
pub struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

/// The core presented another certificate than the pinned one.
#[derive(Debug)]
pub struct PinMismatch {
    /// The pin in the credential.
    pub expected: Pin,
    /// The pin of what the server presented.
    pub found: Pin,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's certificate is {}, but the credential pins {}: this is not the core that issued the credential (or its key was replaced); ask its operator for a new credential",
            self.found, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.matches(end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                expected: self.pin,
                found: Pin::of_certificate(end_entity),
            }))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The pin check's failure inside a handshake error, if that is what failed (a wrong core,
/// never worth retrying).
pub fn pin_mismatch(e: &std::io::Error) -> Option<&PinMismatch> {
    match e.get_ref()?.downcast_ref::<rustls::Error>() {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
            o.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
    }
}
