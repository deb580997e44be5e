//! The errors of the TLS layer.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while generating, loading or using
/// certificates and TLS connections. Each variant reads as a sentence and
/// carries the values (file, host, port) that explain it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A TLS configuration was asked for an endpoint whose policy is
    /// [`TrustPolicy::Plaintext`](super::TrustPolicy::Plaintext); dial it with
    /// [`connect_plaintext_channel`](super::connect_plaintext_channel) instead.
    #[error("{host}:{port} is configured for plaintext (insecure) connections: there is no TLS configuration to build")]
    PlaintextPolicy {
        /// The researcher's host.
        host: String,
        /// The researcher's port.
        port: u16,
    },
    /// A certificate, key or CA file could not be read.
    #[error("could not read the {what} file {path}: {source}")]
    ReadFile {
        /// What the file was expected to hold ("certificate", "private key", "CA bundle").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key file could not be written.
    #[error("could not write the {what} file {path}: {source}")]
    WriteFile {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file (or PEM text) is malformed or holds none of the expected sections.
    #[error("{origin} is not a usable PEM {what}: {reason}")]
    BadPem {
        /// What the PEM was expected to hold.
        what: &'static str,
        /// Where the PEM came from (a file name, or "PEM text").
        origin: String,
        /// Why it was refused.
        reason: String,
    },
    /// A DER certificate could not be parsed as X.509.
    #[error("the certificate is not valid X.509: {reason}")]
    BadCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// The certificate subject has no usable attribute of the given kind.
    #[error("the certificate subject \"{subject}\" has no {attribute} attribute")]
    MissingSubjectAttribute {
        /// "Organization (O=)" or "Common Name (CN=)".
        attribute: &'static str,
        /// The subject as text.
        subject: String,
    },
    /// A researcher id given for a new certificate is empty.
    #[error("a researcher or node id must not be empty")]
    EmptyId,
    /// rcgen could not generate a key or certificate.
    #[error("could not generate the {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// rustls refused a configuration (for example a key that does not match its certificate).
    #[error("rustls refused the {what} configuration: {source}")]
    Config {
        /// Which configuration ("server", "client", "client identity").
        what: &'static str,
        /// rustls' error.
        source: rustls::Error,
    },
    /// A client or server certificate verifier could not be built (for example an empty CA bundle).
    #[error("could not build a certificate verifier from {origin}: {reason}")]
    Verifier {
        /// Where the roots came from.
        origin: String,
        /// Why it failed.
        reason: String,
    },
    /// A host name is neither an IP address nor a valid DNS name.
    #[error("\"{host}\" is neither an IP address nor a valid DNS name")]
    BadHostName {
        /// The host as given.
        host: String,
    },
    /// The TCP connection could not be opened.
    #[error("could not connect to {host}:{port}: {source}")]
    Connect {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted certificate, protocol error, peer closed).
    #[error("the TLS handshake with {host}:{port} failed: {source}")]
    Handshake {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The error, with rustls' reason inside.
        source: std::io::Error,
    },
    /// The peer did not present any certificate.
    #[error("{host}:{port} presented no certificate")]
    NoPeerCertificate {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
    },
    /// An operation did not finish within its time limit.
    #[error("{what} with {host}:{port} did not finish within {after:?}")]
    Timeout {
        /// What timed out ("fetching the certificate", "connecting").
        what: &'static str,
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The limit.
        after: Duration,
    },
    /// The HTTP/2 keepalive interval is below what Fed-BioMed servers accept
    /// (they close connections that ping more often than every ~1.8 s);
    /// see [`ChannelOptions::keepalive_interval`](crate::tls::ChannelOptions).
    #[error("the HTTP/2 keepalive interval {interval:?} is below the minimum of {minimum:?}")]
    KeepaliveTooShort {
        /// The interval asked for.
        interval: Duration,
        /// The minimum.
        minimum: Duration,
    },
    /// A researcher presented a certificate whose researcher id (O=) differs
    /// from the one known for that endpoint: a security error.
    #[error("{host}:{port} now presents researcher id \"{found}\" instead of \"{expected}\"")]
    ResearcherIdChanged {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The id known from before.
        expected: String,
        /// The id in the new certificate.
        found: String,
    },
    /// Mutual TLS is required but the request came without a client certificate.
    #[error("the request from node \"{claimed}\" came without a client certificate")]
    NoClientCertificate {
        /// The node id the request claims.
        claimed: String,
    },
    /// The node id a request claims is not the one its client certificate certifies.
    #[error("a node certified as \"{certified}\" claims to be \"{claimed}\"")]
    NodeIdMismatch {
        /// The node id the request claims.
        claimed: String,
        /// The node id in the client certificate (subject CN=).
        certified: String,
    },
    /// tonic could not build or connect the channel.
    #[error("could not open a gRPC channel to {uri}: {reason}")]
    Channel {
        /// The endpoint URI.
        uri: String,
        /// tonic's error with its whole source chain.
        reason: String,
    },
}

impl TlsError {
    /// What kind of TLS failure this is, when it is one (see [`tls_failure_of`]).
    pub fn failure(&self) -> Option<TlsFailure> {
        tls_failure_of(self)
    }
}

/// Why a TLS handshake failed, as far as a caller needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// We refused the server's certificate (not the pinned one, not signed
    /// by the CA, wrong host name): with trust on first use, fetch it again
    /// and compare researcher ids.
    ServerCertificateRefused,
    /// The server refused our client certificate, or required one we did not
    /// present (mutual TLS). With TLS 1.3 this shows at the first RPC.
    ClientCertificateRefused,
    /// Any other TLS error (protocol, cipher, peer misbehaviour).
    Other(String),
}

/// Looks through an error and its sources (a [`TlsError`], a tonic
/// `Status` or transport error, an `io::Error` from tokio-rustls) for a
/// rustls error and classifies it; `None` when no TLS error is inside.
///
/// rustls reports an alert received after the handshake (how a server
/// refuses a client certificate under TLS 1.3) as an `io::Error` holding
/// only its text, so that case is recognised by rustls' wording
/// ("received fatal alert: CertificateRequired"); the tests pin it.
pub fn tls_failure_of(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            return Some(classify(rustls_error));
        }
        if current.and_then(|c| c.source()).is_none() {
            if let Some(failure) = classify_text(&e.to_string()) {
                return Some(failure);
            }
        }
        // std's io::Error::source() skips the error it wraps: look inside.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(rustls_error) = inner.downcast_ref::<rustls::Error>() {
                    return Some(classify(rustls_error));
                }
                current = Some(inner);
                continue;
            }
        }
        current = e.source();
    }
    None
}

/// Classifies rustls' own wording of an alert received from the peer.
fn classify_text(text: &str) -> Option<TlsFailure> {
    const ALERT: &str = "received fatal alert: ";
    let alert = &text[text.find(ALERT)? + ALERT.len()..];
    let name = alert.split(|c: char| !c.is_alphanumeric()).next()?;
    Some(match name {
        "CertificateRequired"
        | "BadCertificate"
        | "UnknownCA"
        | "CertificateExpired"
        | "CertificateRevoked"
        | "CertificateUnknown"
        | "UnsupportedCertificate"
        | "AccessDenied" => TlsFailure::ClientCertificateRefused,
        _ => TlsFailure::Other(alert.to_string()),
    })
}

fn classify(e: &rustls::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => TlsFailure::ServerCertificateRefused,
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => TlsFailure::ClientCertificateRefused,
        other => TlsFailure::Other(other.to_string()),
    }
}

/// Formats an error with its whole `source()` chain (tonic's transport
/// errors say only "transport error" at the top).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_inside_io_errors_are_classified() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        assert_eq!(
            tls_failure_of(&io),
            Some(TlsFailure::ServerCertificateRefused)
        );
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert_eq!(
            tls_failure_of(&alert),
            Some(TlsFailure::ClientCertificateRefused)
        );
    }

    #[test]
    fn alert_text_is_classified() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        assert_eq!(
            tls_failure_of(&io),
            Some(TlsFailure::ClientCertificateRefused)
        );
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: HandshakeFailure",
        );
        assert!(matches!(tls_failure_of(&io), Some(TlsFailure::Other(_))));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure_of(&plain), None);
    }
}
