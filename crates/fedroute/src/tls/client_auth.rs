//! The researcher's client-certificate verifier for mutual TLS: a node
//! certificate passes when it is registered in the trusted-nodes directory
//! (exact match, see [`TrustedNodes`]) or signed by the client CA (rustls'
//! WebPKI verifier), either being enough when both are configured. Any
//! other certificate, and a connection without one, fails the handshake
//! with an alert.
//!
//! The certificate request names only the client CA's subjects, never the
//! registered certificates (which would tell anyone connecting which nodes
//! are registered).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::trusted_nodes::{Lookup, TrustedNodes};

/// Accepts node certificates registered in a directory or signed by a CA.
pub(crate) struct NodeCertVerifier {
    ca: Option<Arc<dyn ClientCertVerifier>>,
    trusted: Option<Arc<TrustedNodes>>,
    provider: Arc<CryptoProvider>,
}

impl NodeCertVerifier {
    /// A verifier trusting what `ca` accepts and what `trusted` registers
    /// (at least one of them should be given; with neither, nothing passes).
    pub(crate) fn new(
        ca: Option<Arc<dyn ClientCertVerifier>>,
        trusted: Option<Arc<TrustedNodes>>,
        provider: Arc<CryptoProvider>,
    ) -> NodeCertVerifier {
        NodeCertVerifier {
            ca,
            trusted,
            provider,
        }
    }
}

impl fmt::Debug for NodeCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCertVerifier")
            .field("client_ca", &self.ca.is_some())
            .field("trusted_nodes", &self.trusted.as_ref().map(|t| t.dir()))
            .finish()
    }
}

impl ClientCertVerifier for NodeCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.as_ref().map_or(&[], |ca| ca.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let registered = self
            .trusted
            .as_ref()
            .map_or(Lookup::Unknown, |t| t.lookup(end_entity, now));
        if registered == Lookup::Trusted {
            return Ok(ClientCertVerified::assertion());
        }
        if let Some(ca) = &self.ca {
            return ca.verify_client_cert(end_entity, intermediates, now);
        }
        Err(rustls::Error::InvalidCertificate(match registered {
            Lookup::OutsideValidity => CertificateError::Expired,
            _ => CertificateError::UnknownIssuer,
        }))
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
