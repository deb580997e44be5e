//! The errors of the TLS layer.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while generating, loading or using
/// certificates and TLS connections. Each variant reads as a sentence and
/// carries the values (file, host, port) that explain it; a cause is
/// returned by `source()`, not repeated in the message (print the error
/// with [`crate::ErrorChain`] to show it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A TLS configuration was asked for an endpoint whose policy is
    /// [`TrustPolicy::Plaintext`](super::TrustPolicy::Plaintext); dial it with
    /// `connect_plaintext_channel` instead.
    #[error("{host}:{port} is configured for plaintext (insecure) connections: there is no TLS configuration to build")]
    PlaintextPolicy {
        /// The researcher's host.
        host: String,
        /// The researcher's port.
        port: u16,
    },
    /// A certificate, key or CA file could not be read.
    #[error("could not read the {what} file {path}")]
    ReadFile {
        /// What the file was expected to hold ("certificate", "private key", "CA bundle").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key file could not be written.
    #[error("could not write the {what} file {path}")]
    WriteFile {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file to be created exists already (fedroute never overwrites a
    /// certificate or key it generates).
    #[error("{path} already exists; refusing to overwrite it")]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// The directory of registered node certificates
    /// (`ListenSettings::trusted_nodes`) could not be listed.
    #[error("could not read the trusted-nodes directory {path}")]
    ReadDirectory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the trusted-nodes directory is not one usable node
    /// certificate.
    #[error("{path} is not a usable registered node certificate: {reason}")]
    BadRegisteredCertificate {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
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
    /// A node id given for a new certificate is not a valid identifier.
    #[error("cannot make a node certificate for this id")]
    BadNodeId {
        /// What is wrong with the id.
        source: crate::wire::WireError,
    },
    /// rcgen could not generate a key or certificate.
    #[error("could not generate the {what}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A certificate rotation could not be made.
    #[error("could not rotate the researcher certificate: {reason}")]
    Rotation {
        /// What went wrong.
        reason: String,
    },
    /// The trust store file exists but cannot be used; it is left as it
    /// is (never reset): repair it, or move it away to trust every
    /// researcher anew.
    #[error("the trust store {path} is damaged: {reason}")]
    TrustStoreDamaged {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A state directory holds the identity of another researcher than the
    /// configured id.
    #[error("{path} holds the identity of researcher {stored}, not of the configured {wanted}")]
    IdentityMismatch {
        /// The identity file.
        path: std::path::PathBuf,
        /// The id it holds.
        stored: String,
        /// The configured id.
        wanted: String,
    },
    /// The identity file of a state directory does not hold a usable
    /// certificate and key.
    #[error("the researcher identity {path} is damaged")]
    IdentityDamaged {
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        source: Box<TlsError>,
    },
    /// One's own certificate is outside its validity period.
    #[error("the certificate in {path} {validity}")]
    OwnCertificateInvalid {
        /// The file.
        path: std::path::PathBuf,
        /// How its validity stands ("expired on ...").
        validity: String,
    },
    /// rustls refused a configuration (for example a key that does not match its certificate).
    #[error("rustls refused the {what} configuration")]
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
    #[error("could not connect to {host}:{port}")]
    Connect {
        /// The host dialled.
        host: String,
        /// The port dialled.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted certificate, protocol error, peer closed).
    #[error("the TLS handshake with {host}:{port} failed")]
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
        /// The node id in the client certificate (subject O=, else CN=).
        certified: String,
    },
    /// The HTTP proxy did not open a tunnel to the server (down, refused
    /// with a status such as 407, 403 or 502, closed or garbled its
    /// answer); see [`ProxyError`](crate::proxy::ProxyError).
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// tonic could not build or connect the channel.
    #[error("could not open a gRPC channel to {uri}: {reason}")]
    Channel {
        /// The endpoint URI.
        uri: String,
        /// tonic's error with its whole source chain.
        reason: String,
    },
}
