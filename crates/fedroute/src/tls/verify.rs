//! Server certificate verifiers: pinning one exact certificate, and
//! accepting (and recording) any certificate for trust on first use.
//!
//! Both still check the handshake signatures with the ring provider's
//! algorithms, so a peer must hold the private key of the certificate it
//! shows. Neither checks host names: Fed-BioMed certificates carry the host
//! only in the Common Name, which rustls never matches, and a pinned
//! certificate is trusted whatever name was dialled.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::crypto_provider;

/// Where an accept-anything verifier records the leaf certificate it saw.
pub(crate) type LeafSlot = Arc<Mutex<Option<CertificateDer<'static>>>>;

/// Accepts exactly one certificate (DER equality of the leaf), whatever host
/// name was dialled and whatever its validity dates; the handshake signature
/// is still verified against it.
pub(crate) struct PinnedCertVerifier {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCertVerifier {
    /// A verifier trusting only `pinned`.
    pub(super) fn new(pinned: CertificateDer<'static>) -> PinnedCertVerifier {
        PinnedCertVerifier {
            pinned,
            provider: crypto_provider(),
        }
    }
}

impl fmt::Debug for PinnedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCertVerifier")
            .field("pinned_len", &self.pinned.len())
            .finish()
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            log::warn!(
                "TLS: the server presented a certificate ({} bytes) that is not the pinned one",
                end_entity.len()
            );
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

/// Accepts any server certificate (trust on first use) and records the leaf
/// once the server has proven it holds its key: the leaf is written to the
/// slot only when the handshake signature made with it verifies.
pub(crate) struct AcceptAnyServerCert {
    seen: Option<LeafSlot>,
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    /// A verifier that records the leaf into `seen` when given.
    pub(crate) fn new(seen: Option<LeafSlot>) -> AcceptAnyServerCert {
        AcceptAnyServerCert {
            seen,
            provider: crypto_provider(),
        }
    }

    fn record(&self, cert: &CertificateDer<'_>) {
        if let Some(seen) = &self.seen {
            // A poisoned lock only means another handshake panicked while
            // recording; the slot itself is still a plain Option.
            let mut slot = seen.lock().unwrap_or_else(|p| p.into_inner());
            *slot = Some(cert.clone().into_owned());
        }
    }
}

impl fmt::Debug for AcceptAnyServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptAnyServerCert").finish()
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
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
        let valid = verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )?;
        self.record(cert);
        Ok(valid)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )?;
        self.record(cert);
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
