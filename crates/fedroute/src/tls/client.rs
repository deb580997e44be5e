//! The node (client) side of trust: trust policies, rustls client
//! configurations (pinned certificate or CA bundle, optional node identity,
//! ALPN h2), and fetching a server certificate for trust on first use.
//! Channels are opened by [`super::channel`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

use super::dial::{dial, peer_leaf, server_name};
use super::identity::{researcher_id_of, ClientIdentity};
use super::pem::load_certificates;
use super::verify::{AcceptAnyServerCert, LeafSlot, PinnedCertVerifier};
use super::{crypto_provider, TlsError, ALPN_H2};
use crate::proxy::Proxy;
use crate::ErrorChain;

/// How a node decides to trust a researcher's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustPolicy {
    /// Trust the certificate seen on first contact and remember it (in the
    /// node's trust store; across restarts with a state directory); the
    /// researcher id comes from its subject O=. A later, different
    /// certificate is refused unless it carries a valid rotation proof by
    /// the remembered key. The default.
    TrustOnFirstUse,
    /// Fed-BioMed's behaviour: like [`TrustPolicy::TrustOnFirstUse`], but a
    /// different certificate with the same researcher id (subject O=) is
    /// accepted, with a warning each time. The id is not secret (it is in
    /// every task), so anyone on the path can present such a certificate:
    /// use it only where Fed-BioMed researchers regenerate their
    /// certificates and the network is trusted.
    TrustSameResearcherId,
    /// Trust exactly the certificate in this PEM file, whatever host name is dialled.
    PinnedCertificate(PathBuf),
    /// Trust certificates signed by a CA in this PEM bundle (host names are checked).
    CaBundle(PathBuf),
    /// No TLS at all (insecure: for debugging and closed test set-ups only;
    /// a warning is logged at every connection). The researcher id is then
    /// learnt from the first task.
    Plaintext,
}

/// A client configuration that accepts exactly `pinned` (DER equality, any
/// host name, handshake signature still checked), offers ALPN h2, and
/// presents `client` when the server asks for a certificate.
pub fn pinned_client_config(
    pinned: CertificateDer<'static>,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(pinned)));
    finish_client_config(builder, client)
}

/// A client configuration trusting the CAs of a PEM bundle (a normal WebPki
/// verifier: chain, validity dates and host name are checked), offering ALPN
/// h2 and presenting `client` when asked.
pub fn ca_client_config(
    ca: &Path,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let origin = ca.display().to_string();
    let roots = root_store(&load_certificates(ca)?, &origin)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsError::Verifier {
            origin,
            reason: e.to_string(),
        })?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .with_webpki_verifier(verifier);
    finish_client_config(builder, client)
}

/// A root store holding every certificate of a bundle; all must parse.
pub(crate) fn root_store(
    certs: &[CertificateDer<'static>],
    origin: &str,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| TlsError::Verifier {
            origin: origin.to_string(),
            reason: format!(
                "certificate {} of the bundle is not a usable CA: {e}",
                i + 1
            ),
        })?;
    }
    Ok(roots)
}

/// An accept-anything configuration that records the leaf (trust on first use).
fn accept_any_client_config(
    seen: LeafSlot,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(Some(seen))));
    finish_client_config(builder, client)
}

fn finish_client_config(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.cert_chain().to_vec(), id.key())
            .map_err(|source| TlsError::Config {
                what: "client identity",
                source,
            })?,
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Fetches a server's leaf certificate without trusting it (trust on first
/// use): a TLS handshake with an accept-anything verifier, bounded by
/// `timeout`. The certificate is returned once the server has proven it
/// holds its key (the handshake signature verifies), even if the handshake
/// then fails because the server wants a client certificate. `client` is
/// the node identity to present to servers that require mutual TLS.
pub async fn fetch_server_certificate(
    host: &str,
    port: u16,
    timeout: Duration,
    client: Option<&ClientIdentity>,
) -> Result<CertificateDer<'static>, TlsError> {
    fetch_server_certificate_via(host, port, None, timeout, client).await
}

/// [`fetch_server_certificate`] through an HTTP proxy when `proxy` is
/// given (the handshake runs inside a `CONNECT` tunnel).
pub async fn fetch_server_certificate_via(
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
    timeout: Duration,
    client: Option<&ClientIdentity>,
) -> Result<CertificateDer<'static>, TlsError> {
    let seen = LeafSlot::default();
    let config = accept_any_client_config(Arc::clone(&seen), client)?;
    let name = server_name(host)?;
    let fetch = async {
        let mut tls = match dial(host, port, name, config, true, proxy).await {
            Ok(tls) => tls,
            Err(e) => {
                // A server that requires a client certificate we lack may
                // end the handshake after it proved it holds its key (TLS
                // 1.2): its certificate is known all the same.
                let recorded = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
                return match recorded {
                    Some(leaf) => {
                        log::debug!(
                            "TLS: the handshake with {host}:{port} failed after the server proved its certificate ({}); keeping the certificate",
                            ErrorChain(&e)
                        );
                        Ok(leaf)
                    }
                    None => Err(e),
                };
            }
        };
        let leaf = match peer_leaf(&tls, host, port) {
            Ok(leaf) => leaf,
            Err(e) => seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or(e)?,
        };
        // Polite close; the certificate is all we wanted.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok(leaf)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| TlsError::Timeout {
            what: "fetching the server certificate",
            host: host.to_string(),
            port,
            after: timeout,
        })?
}

/// A server certificate a node decided to trust, with the client
/// configuration that trusts it (see [`trusted_client_config`]).
#[derive(Clone, Debug)]
pub struct TrustedServer {
    /// The configuration to hand to [`connect_channel`](super::connect_channel).
    pub config: Arc<ClientConfig>,
    /// The trusted (pinned) certificate; `None` with a CA bundle, where it is
    /// only known after connecting ([`connect_channel_with_peer`](super::connect_channel_with_peer)).
    pub certificate: Option<CertificateDer<'static>>,
    /// The researcher id from the certificate's subject O=, when known and present.
    pub researcher_id: Option<String>,
}

/// Applies a [`TrustPolicy`] for one endpoint: with trust on first use the
/// certificate is fetched (bounded by `timeout`) and pinned; with a pinned
/// file it is loaded; with a CA bundle a WebPki configuration is built.
pub async fn trusted_client_config(
    policy: &TrustPolicy,
    host: &str,
    port: u16,
    client: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<TrustedServer, TlsError> {
    trusted_client_config_via(policy, host, port, None, client, timeout).await
}

/// [`trusted_client_config`] with the certificate fetched through an HTTP
/// proxy when `proxy` is given (trust on first use; the other policies
/// make no connection).
pub async fn trusted_client_config_via(
    policy: &TrustPolicy,
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
    client: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<TrustedServer, TlsError> {
    match policy {
        TrustPolicy::TrustOnFirstUse | TrustPolicy::TrustSameResearcherId => {
            let cert = fetch_server_certificate_via(host, port, proxy, timeout, client).await?;
            Ok(pinned_server(cert, client)?)
        }
        TrustPolicy::PinnedCertificate(path) => {
            let cert = load_certificates(path)?.swap_remove(0);
            Ok(pinned_server(cert, client)?)
        }
        TrustPolicy::CaBundle(path) => Ok(TrustedServer {
            config: ca_client_config(path, client)?,
            certificate: None,
            researcher_id: None,
        }),
        TrustPolicy::Plaintext => Err(TlsError::PlaintextPolicy {
            host: host.to_string(),
            port,
        }),
    }
}

fn pinned_server(
    cert: CertificateDer<'static>,
    client: Option<&ClientIdentity>,
) -> Result<TrustedServer, TlsError> {
    let researcher_id = match researcher_id_of(&cert) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!(
                "TLS: the trusted server certificate carries no researcher id: {}",
                ErrorChain(&e)
            );
            None
        }
    };
    Ok(TrustedServer {
        config: pinned_client_config(cert.clone(), client)?,
        certificate: Some(cert),
        researcher_id,
    })
}
