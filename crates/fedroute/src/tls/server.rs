//! The researcher (server) side: tonic's `ServerTlsConfig` from a
//! [`ServerIdentity`], optionally requiring client certificates signed by a
//! CA (mutual TLS); the rustls configuration of fedroute's own researcher
//! (a CA, a directory of registered node certificates, or both); and
//! reading the node id a client certificate carries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::client::root_store;
use super::client_auth::NodeCertVerifier;
use super::identity::{node_id_of_client_cert, ServerIdentity};
use super::pem::{certificates_from_pem, read_file};
use super::trusted_nodes::TrustedNodes;
use super::{crypto_provider, install_crypto_provider, TlsError, ALPN_H2};

/// The longest a TLS handshake may take on the server before the connection
/// is dropped (a stalled client must not hold a connection slot).
pub(crate) const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// tonic's server TLS configuration for `id`. With `client_ca`, clients must
/// present a certificate signed by a CA of that PEM bundle (mutual TLS), and
/// handlers can read the node id with [`peer_node_id`].
///
/// Everything is checked here (key matches certificate, CA bundle parses),
/// so a bad file fails now rather than at the first connection. Installs the
/// ring provider as process default, which tonic's server TLS relies on.
pub fn server_tls_config(
    id: &ServerIdentity,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let ca_pem = match client_ca {
        Some(path) => Some(read_file(path, "CA bundle")?),
        None => None,
    };
    // Validate with the same inputs tonic will use.
    let verifier = match ca_pem.as_deref().zip(client_ca) {
        Some((pem, path)) => Some(ca_verifier(pem, path)?),
        None => None,
    };
    build_server_config(id, verifier)?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&id.cert_pem, &id.key_pem))
        .timeout(SERVER_HANDSHAKE_TIMEOUT);
    if let Some(pem) = ca_pem {
        config = config.client_ca_root(Certificate::from_pem(pem));
    }
    Ok(config)
}

/// A rustls server configuration equivalent to [`server_tls_config`] (ALPN
/// h2, ring provider), for servers that drive rustls themselves (test
/// doubles, raw TLS listeners).
pub fn server_rustls_config(
    id: &ServerIdentity,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = match client_ca {
        Some(path) => Some(ca_verifier(&read_file(path, "CA bundle")?, path)?),
        None => None,
    };
    build_server_config(id, verifier).map(Arc::new)
}

/// The rustls configuration of fedroute's researcher, which does TLS in
/// its own accept loop: ALPN h2, and mutual TLS when `client_ca` or
/// `trusted_nodes` is set (a node certificate passes when either accepts
/// it; see `client_auth`). Files are read and checked now: a missing
/// directory or a file that does not parse is an error naming it.
pub(crate) fn researcher_server_config(
    id: &ServerIdentity,
    client_ca: Option<&Path>,
    trusted_nodes: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let ca = match client_ca {
        Some(path) => Some(ca_verifier(&read_file(path, "CA bundle")?, path)?),
        None => None,
    };
    let trusted = match trusted_nodes {
        Some(dir) => {
            let trusted = TrustedNodes::open(dir)?;
            let count = trusted.current().len();
            log::info!(
                "trusted nodes: {count} registered certificate(s) in {}{}",
                dir.display(),
                if count == 0 {
                    " (copy a node's .pem there to register it; no restart needed)"
                } else {
                    ""
                }
            );
            Some(Arc::new(trusted))
        }
        None => None,
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = if ca.is_some() || trusted.is_some() {
        Some(Arc::new(NodeCertVerifier::new(
            ca,
            trusted,
            crypto_provider(),
        )))
    } else {
        None
    };
    build_server_config(id, verifier).map(Arc::new)
}

/// rustls' WebPKI client verifier over the CA bundle `pem` (read from `path`).
fn ca_verifier(pem: &[u8], path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let origin = path.display().to_string();
    let roots = root_store(&certificates_from_pem(pem, &origin)?, &origin)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsError::Verifier {
            origin,
            reason: e.to_string(),
        })
}

fn build_server_config(
    id: &ServerIdentity,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "server",
            source,
        })?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder
        .with_single_cert(id.cert_chain()?, id.private_key()?)
        .map_err(|source| TlsError::Config {
            what: "server",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The node id (subject O=, else CN=) of the client certificate a request came with;
/// `None` when the connection presented no certificate (no mutual TLS).
pub fn peer_node_id<T>(request: &tonic::Request<T>) -> Option<Result<String, TlsError>> {
    let certs = request.peer_certs()?;
    let leaf = certs.first()?;
    Some(node_id_of_client_cert(leaf))
}

/// Checks that a request claiming to come from node `claimed` may act as it.
/// With a client certificate, its node id (subject O=, else CN=) must equal
/// `claimed`. Without one, the request passes only when `mutual_tls` is off.
pub fn authorize_node<T>(
    request: &tonic::Request<T>,
    claimed: &str,
    mutual_tls: bool,
) -> Result<(), TlsError> {
    match peer_node_id(request) {
        None if mutual_tls => Err(TlsError::NoClientCertificate {
            claimed: claimed.to_string(),
        }),
        None => Ok(()),
        Some(certified) => {
            let certified = certified?;
            if certified == claimed {
                Ok(())
            } else {
                Err(TlsError::NodeIdMismatch {
                    claimed: claimed.to_string(),
                    certified,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_client_certificate_only_plain_tls_passes() {
        let request = tonic::Request::new(());
        assert!(authorize_node(&request, "NODE_1", false).is_ok());
        assert!(matches!(
            authorize_node(&request, "NODE_1", true),
            Err(TlsError::NoClientCertificate { .. })
        ));
        assert!(peer_node_id(&request).is_none());
    }
}
