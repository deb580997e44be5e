//! The "no process-level CryptoProvider" panic must not come back: in a
//! fresh process where nobody installed a provider first, every client and
//! server configuration builds, and a tonic TLS server (which asks rustls
//! for the process default) serves a pinned client.
//!
//! One test function on purpose: the order of steps is the point.

use crate::tls_support;

use std::time::Duration;

use fedroute::tls::{
    ca_client_config, connect_channel, generate_researcher_identity, install_crypto_provider,
    pinned_client_config, server_rustls_config, ChannelOptions,
};
use fedroute_testkit::ca::CertificateAuthority;
use rustls::crypto::CryptoProvider;
use tls_support::{probe, within, TestServer};

#[tokio::test]
async fn configs_build_and_serve_without_a_preinstalled_provider() {
    // It installs process-wide state (see `rerun_alone`).
    if fedroute_testkit::process::rerun_alone(
        "tls_provider::configs_build_and_serve_without_a_preinstalled_provider",
    ) {
        return;
    }
    assert!(
        CryptoProvider::get_default().is_none(),
        "this test needs a process where no provider was installed yet"
    );
    let dir = tempfile::tempdir().unwrap();
    let id = generate_researcher_identity(None, "127.0.0.1").unwrap();
    let ca = CertificateAuthority::generate("CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_file).unwrap();

    // Explicit-provider paths: no default needed.
    pinned_client_config(id.cert_der.clone(), None).unwrap();
    ca_client_config(&ca_file, None).unwrap();
    server_rustls_config(&id, Some(&ca_file)).unwrap();

    // tonic's server builds its rustls config from the process default
    // (server_tls_config installs ring first).
    let server = TestServer::start(&id, Some(&ca_file)).await;
    let node = ca
        .issue_node_identity("NODE_p")
        .unwrap()
        .client_identity()
        .unwrap();
    let config = pinned_client_config(id.cert_der.clone(), Some(&node)).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &{
            let mut opts = ChannelOptions::default();
            opts.connect_timeout = Duration::from_secs(5);
            opts
        }),
    )
    .await
    .unwrap();
    assert_eq!(probe(channel).await.unwrap(), "NODE_p");
    server.stop().await;

    // The process default is ring, and installing again changes nothing.
    let installed = CryptoProvider::get_default().expect("a provider is installed");
    let ring = rustls::crypto::ring::default_provider();
    let suites = |p: &CryptoProvider| {
        p.cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect::<Vec<_>>()
    };
    assert_eq!(suites(installed), suites(&ring));
    install_crypto_provider();
    assert!(std::ptr::eq(
        installed,
        CryptoProvider::get_default().unwrap()
    ));
}
