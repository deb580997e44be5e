//! Certificates, trust policies and TLS configurations.
//!
//! # Layout
//! - `identity`: researcher certificates (generate with O = researcher id,
//!   load from PEM files) and node client identities; ids read from subjects.
//! - `node_cert`: self-signed node certificates to register with a
//!   researcher ([`generate_node_identity`]).
//! - `verify`: the pinned-certificate and accept-anything verifiers.
//! - `trusted_nodes`: the researcher's directory of registered node
//!   certificates, re-read when it changes.
//! - `client_auth`: the researcher's client-certificate verifier (registered
//!   certificates, a client CA, or both).
//! - `client`: trust policies, client configurations, trust on first use.
//! - `channel`: tonic channels over our own TCP + rustls connector.
//! - `server`: tonic's server TLS configuration, optional mutual TLS.
//! - `error`: the layer's error enum, [`TlsError`].
//!
//! # Example
//! A researcher identity, the server configuration that presents it, and a
//! node configuration that pins it (as trust on first use would):
//! ```
//! use fedroute::tls;
//!
//! let id = tls::generate_researcher_identity(None, "127.0.0.1")?;
//! assert!(id.researcher_id.starts_with(tls::RESEARCHER_ID_PREFIX));
//! let _server = tls::server_tls_config(&id, None)?; // Server::builder().tls_config(..)
//! let client = tls::pinned_client_config(id.cert_der.clone(), None)?;
//! assert_eq!(client.alpn_protocols, vec![b"h2".to_vec()]);
//! assert_eq!(tls::researcher_id_of(&id.cert_der)?, id.researcher_id);
//! # Ok::<(), tls::TlsError>(())
//! ```
//! A node then opens a channel with
//! `tls::connect_channel(host, port, client, &tls::ChannelOptions::default()).await?`
//! (through an HTTP proxy when [`ChannelOptions::proxy`] is set: TLS runs
//! inside its `CONNECT` tunnel; see [`crate::proxy`]).
//!
//! # A node's connection, step by step
//! 1. [`trusted_client_config`] applies the endpoint's [`TrustPolicy`]:
//!    trust on first use fetches the certificate
//!    ([`fetch_server_certificate`]) and pins it, reading the researcher
//!    id from O=; a pinned file is loaded; a CA bundle gives a WebPki verifier.
//! 2. [`connect_channel_with_peer`] opens the channel and returns the
//!    certificate seen (the researcher id with a CA bundle). When a pinned
//!    certificate is refused later, the node's link fetches it again and
//!    compares researcher ids (see [`crate::node`]).
//!
//! # A researcher's server
//! [`generate_researcher_identity`] or [`load_researcher_identity`], then
//! `Server::builder().tls_config(server_tls_config(&id, client_ca)?)` and
//! `serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))` (Nagle
//! off: with it, the first RPC of each connection waits for a delayed ACK, 45 ms
//! instead of 8 ms on loopback). With a client CA,
//! handlers call [`authorize_node`] (or [`peer_node_id`]) to check that a
//! node acts only as itself. fedroute's own researcher does TLS in its own
//! accept loop instead, with a client verifier that also takes a directory
//! of registered node certificates ([`generate_node_identity`] makes them;
//! see `ListenSettings::trusted_nodes` in [`crate::researcher`]).
//!
//! # Crypto provider
//! Only rustls' ring provider is compiled in. Every configuration built here
//! passes it explicitly (`builder_with_provider`); tonic's server builds its
//! own rustls configuration from the process default, which
//! [`install_crypto_provider`] sets (idempotent, called by
//! [`server_tls_config`] and [`connect_channel`]).

mod channel;
mod client;
mod client_auth;
mod dial;
mod error;
mod fingerprint;
mod identity;
mod identity_dir;
mod info;
mod node_cert;
mod pem;
mod rotation;
mod server;
mod trust_store;
mod trusted_nodes;
mod validity;
mod verify;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub(crate) use channel::connect_plaintext_channel;
pub use channel::{connect_channel, connect_channel_with_peer, ChannelOptions, ConnectedChannel};
pub use client::{
    ca_client_config, fetch_server_certificate, fetch_server_certificate_via, pinned_client_config,
    trusted_client_config, trusted_client_config_via, TrustPolicy, TrustedServer,
};
pub use error::TlsError;
pub use fingerprint::Fingerprint;
pub use identity::{
    generate_researcher_identity, generate_researcher_identity_for_hosts, load_researcher_identity,
    new_researcher_id, node_id_of_client_cert, researcher_id_of, ClientIdentity, ServerIdentity,
    RESEARCHER_ID_PREFIX,
};
pub use identity_dir::IdentityDir;
pub use info::CertificateInfo;
pub use node_cert::{generate_node_identity, NodeCertificate};
pub use rotation::RotationError;
pub use rustls_pki_types::CertificateDer;
pub use server::{authorize_node, peer_node_id, server_rustls_config, server_tls_config};
pub(crate) use server::{researcher_server_config, SERVER_HANDSHAKE_TIMEOUT};
pub use trust_store::{Acceptance, TrustStore, TrustedResearcher};
pub(crate) use trust_store::{ChangeRule, Decision};

/// The ALPN protocol id of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// The crypto provider every fedroute TLS configuration uses: rustls' ring.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-level rustls provider, for code that builds
/// configurations without naming one (tonic's server TLS). Idempotent: when
/// a provider is already installed (by us or anyone else), nothing changes.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: some provider is
        // installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Encodes a DER certificate as PEM text (for example to save a certificate
/// fetched on first use as a pinned-certificate file).
pub fn certificate_pem(der: &CertificateDer<'_>) -> String {
    pem::certificate_to_pem(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_error_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TlsError>();
        assert_send_sync::<ClientIdentity>();
        assert_send_sync::<ServerIdentity>();
    }

    #[test]
    fn install_crypto_provider_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}
