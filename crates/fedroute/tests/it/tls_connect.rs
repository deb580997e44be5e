//! TLS over real tonic on 127.0.0.1: pinned certificates, trust on first
//! use, CA bundles, mutual TLS and Fed-BioMed-shaped RSA certificates.
//! Every await is bounded by a timeout.

use crate::tls_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedroute::tls::{
    self, ca_client_config, connect_channel, connect_channel_with_peer, fetch_server_certificate,
    generate_researcher_identity, load_researcher_identity, pinned_client_config, researcher_id_of,
    trusted_client_config, ChannelOptions, ServerIdentity, TlsError, TrustPolicy,
};
use fedroute_testkit::ca::CertificateAuthority;
use tls_support::{probe, probe_as, tls_failure_of, within, TestServer, TlsFailure};
use tokio::net::TcpListener;
use tonic::transport::Channel;

fn opts() -> ChannelOptions {
    let mut opts = ChannelOptions::default();
    opts.connect_timeout = Duration::from_secs(5);
    opts
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[tokio::test]
async fn pinned_client_connects_and_sees_the_server_certificate() {
    let id = generate_researcher_identity(Some("RESEARCHER_pin"), "127.0.0.1").unwrap();
    let server = TestServer::start(&id, None).await;
    let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
    let connected = within(
        "connect",
        connect_channel_with_peer("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect("pinned certificate accepted");
    assert_eq!(connected.peer_certificate, id.cert_der);
    assert_eq!(
        researcher_id_of(&connected.peer_certificate).unwrap(),
        "RESEARCHER_pin"
    );
    assert_eq!(probe(connected.channel.clone()).await.unwrap(), "-");
    assert_eq!(connected.latest_peer_certificate(), id.cert_der);
    server.stop().await;
}

#[tokio::test]
async fn a_different_pinned_certificate_is_refused() {
    let id = generate_researcher_identity(Some("RESEARCHER_real"), "127.0.0.1").unwrap();
    let other = generate_researcher_identity(Some("RESEARCHER_real"), "127.0.0.1").unwrap();
    let server = TestServer::start(&id, None).await;
    let config = pinned_client_config(other.cert_der.clone(), None).unwrap();
    let err = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect_err("a certificate other than the pinned one must be refused");
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
    assert_eq!(
        tls_failure_of(&err),
        Some(TlsFailure::ServerCertificateRefused)
    );
    server.stop().await;
}

#[tokio::test]
async fn pinning_ignores_the_host_name_dialled() {
    // Certificate names another host; pinning trusts the DER, not the name.
    let id = generate_researcher_identity(Some("RESEARCHER_name"), "researcher.example").unwrap();
    let server = TestServer::start(&id, None).await;
    for host in ["127.0.0.1", "localhost"] {
        let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
        let channel = within(
            "connect",
            connect_channel(host, server.port(), config, &opts()),
        )
        .await
        .unwrap_or_else(|e| panic!("dialling {host}: {e}"));
        probe(channel).await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn trust_on_first_use_fetches_the_certificate_and_its_researcher_id() {
    let id = generate_researcher_identity(None, "127.0.0.1").unwrap();
    let server = TestServer::start(&id, None).await;
    let fetched = within(
        "fetch",
        fetch_server_certificate("127.0.0.1", server.port(), Duration::from_secs(5), None),
    )
    .await
    .expect("certificate fetched");
    assert_eq!(fetched, id.cert_der);
    assert_eq!(researcher_id_of(&fetched).unwrap(), id.researcher_id);

    let trusted = within(
        "trust policy",
        trusted_client_config(
            &TrustPolicy::TrustOnFirstUse,
            "127.0.0.1",
            server.port(),
            None,
            Duration::from_secs(5),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        trusted.researcher_id.as_deref(),
        Some(id.researcher_id.as_str())
    );
    assert_eq!(trusted.certificate.as_ref(), Some(&id.cert_der));
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), trusted.config, &opts()),
    )
    .await
    .unwrap();
    probe(channel).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn fetch_from_a_silent_server_times_out() {
    // Accepts TCP but never answers the TLS handshake.
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let keeper = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let err = within(
        "fetch",
        fetch_server_certificate("127.0.0.1", port, Duration::from_millis(300), None),
    )
    .await
    .expect_err("no handshake, no certificate");
    assert!(matches!(err, TlsError::Timeout { .. }), "{err}");
    let mut opts = opts();
    opts.connect_timeout = Duration::from_millis(300);
    let config = pinned_client_config(
        generate_researcher_identity(None, "127.0.0.1")
            .unwrap()
            .cert_der,
        None,
    )
    .unwrap();
    let err = within("connect", connect_channel("127.0.0.1", port, config, &opts))
        .await
        .expect_err("no handshake, no channel");
    assert!(matches!(err, TlsError::Timeout { .. }), "{err}");
    keeper.abort();
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = within(
        "fetch",
        fetch_server_certificate("127.0.0.1", port, Duration::from_secs(5), None),
    )
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, TlsError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn ca_bundle_policy_trusts_ca_signed_servers_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_file).unwrap();

    // A CA-signed certificate for the host dialled: accepted.
    let id = ca
        .issue_researcher_identity("RESEARCHER_ca", "127.0.0.1")
        .unwrap();
    let server = TestServer::start(&id, None).await;
    let trusted = within(
        "trust policy",
        trusted_client_config(
            &TrustPolicy::CaBundle(ca_file.clone()),
            "127.0.0.1",
            server.port(),
            None,
            Duration::from_secs(5),
        ),
    )
    .await
    .unwrap();
    assert!(trusted.certificate.is_none());
    let connected = within(
        "connect",
        connect_channel_with_peer("127.0.0.1", server.port(), trusted.config, &opts()),
    )
    .await
    .expect("CA-signed certificate accepted");
    assert_eq!(
        researcher_id_of(&connected.peer_certificate).unwrap(),
        "RESEARCHER_ca"
    );
    probe(connected.channel).await.unwrap();
    server.stop().await;

    // Self-signed (not from the CA): refused.
    let self_signed = generate_researcher_identity(Some("RESEARCHER_self"), "127.0.0.1").unwrap();
    let server = TestServer::start(&self_signed, None).await;
    let config = ca_client_config(&ca_file, None).unwrap();
    let err = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect_err("a certificate outside the CA must be refused");
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
    server.stop().await;

    // CA-signed but for another host name: refused (CA policy checks names).
    let wrong_name = ca
        .issue_researcher_identity("RESEARCHER_ca", "other.example")
        .unwrap();
    let server = TestServer::start(&wrong_name, None).await;
    let config = ca_client_config(&ca_file, None).unwrap();
    let err = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect_err("a certificate for another host must be refused");
    assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
    server.stop().await;
}

/// Mutual TLS: a server requiring client certificates from `ca`.
async fn mutual_tls_server(dir: &Path) -> (TestServer, CertificateAuthority, ServerIdentity) {
    let ca = CertificateAuthority::generate("node CA").unwrap();
    let ca_file = dir.join("node-ca.pem");
    ca.write_cert_pem(&ca_file).unwrap();
    let id = generate_researcher_identity(Some("RESEARCHER_mtls"), "127.0.0.1").unwrap();
    let server = TestServer::start(&id, Some(&ca_file)).await;
    (server, ca, id)
}

/// How a client was refused (at connect or at the first call); `None` when
/// its RPC got through.
async fn refusal(channel: Result<Channel, TlsError>) -> Option<Option<TlsFailure>> {
    match channel {
        Err(e) => Some(tls_failure_of(&e)),
        Ok(channel) => match probe(channel).await {
            Err(status) => Some(tls_failure_of(&status)),
            Ok(_) => None,
        },
    }
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _ca, id) = mutual_tls_server(dir.path()).await;
    let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await;
    assert_eq!(
        refusal(channel).await,
        Some(Some(TlsFailure::ClientCertificateRefused)),
        "a client without certificate must be refused for that reason"
    );
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_accepts_a_ca_signed_node_and_the_server_sees_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca, id) = mutual_tls_server(dir.path()).await;
    let node = fedroute_testkit::ca::generate_node_identity("NODE_a", &ca).unwrap();
    let (cert, key) = (dir.path().join("node.pem"), dir.path().join("node.key"));
    node.write_pem(&cert, &key).unwrap();
    let client = tls::ClientIdentity::load(&cert, &key).unwrap();
    assert_eq!(client.node_id().unwrap(), "NODE_a");

    let config = pinned_client_config(id.cert_der.clone(), Some(&client)).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect("CA-signed node accepted");
    assert_eq!(probe(channel.clone()).await.unwrap(), "NODE_a");
    // It may act as itself, not as another node.
    assert_eq!(probe_as(channel.clone(), "NODE_a").await.unwrap(), "NODE_a");
    let status = probe_as(channel, "NODE_b").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains("NODE_b"), "{status}");

    // Trust on first use against a mutual-TLS server, presenting the node identity.
    let fetched = within(
        "fetch",
        tls::fetch_server_certificate(
            "127.0.0.1",
            server.port(),
            Duration::from_secs(5),
            Some(&client),
        ),
    )
    .await
    .unwrap();
    assert_eq!(fetched, id.cert_der);
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_node_certificate_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _ca, id) = mutual_tls_server(dir.path()).await;
    let rogue_ca = CertificateAuthority::generate("rogue CA").unwrap();
    let rogue = rogue_ca.issue_node_identity("NODE_a").unwrap();
    let client = rogue.client_identity().unwrap();
    let config = pinned_client_config(id.cert_der.clone(), Some(&client)).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await;
    assert_eq!(
        refusal(channel).await,
        Some(Some(TlsFailure::ClientCertificateRefused)),
        "a node from another CA must be refused for that reason"
    );
    server.stop().await;
}

#[tokio::test]
async fn fedbiomed_rsa_certificate_serves_and_is_pinned() {
    // RSA-2048, self-signed, CN=localhost, O=RESEARCHER_..., no SAN.
    let id = load_researcher_identity(
        &fixture("fedbiomed_researcher_cert.pem"),
        &fixture("fedbiomed_researcher_key.pem"),
    )
    .expect("Fed-BioMed style certificate loads");
    assert_eq!(
        id.researcher_id,
        "RESEARCHER_5a7c0f64-2f0e-4b4e-9d0c-3f5e8c1b2a90"
    );
    let server = TestServer::start(&id, None).await;
    let fetched = within(
        "fetch",
        fetch_server_certificate("127.0.0.1", server.port(), Duration::from_secs(5), None),
    )
    .await
    .unwrap();
    assert_eq!(fetched, id.cert_der);
    let config = pinned_client_config(fetched, None).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", server.port(), config, &opts()),
    )
    .await
    .expect("RSA certificate without SAN accepted when pinned");
    probe(channel).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_channel_reconnects_through_the_pinned_connector_after_a_restart() {
    let id = generate_researcher_identity(Some("RESEARCHER_again"), "127.0.0.1").unwrap();
    let server = TestServer::start(&id, None).await;
    let port = server.port();
    let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
    let connected = within(
        "connect",
        connect_channel_with_peer("127.0.0.1", port, config, &opts()),
    )
    .await
    .unwrap();
    probe(connected.channel.clone()).await.unwrap();
    server.stop().await;

    // Same port, same certificate: the channel dials again by itself.
    let server = TestServer::start_on(port, &id, None).await;
    assert!(
        probe_with_retries(&connected.channel).await,
        "the channel never reconnected"
    );
    assert_eq!(connected.latest_peer_certificate(), id.cert_der);
    server.stop().await;

    // Same port, NEW certificate: the pinned connector refuses to reconnect.
    let replaced = generate_researcher_identity(Some("RESEARCHER_again"), "127.0.0.1").unwrap();
    let server = TestServer::start_on(port, &replaced, None).await;
    assert!(
        !probe_with_retries(&connected.channel).await,
        "a channel pinned to the old certificate reached the new server"
    );
    let status = probe(connected.channel.clone()).await.unwrap_err();
    assert_eq!(
        tls_failure_of(&status),
        Some(TlsFailure::ServerCertificateRefused),
        "{status:?}"
    );
    assert_eq!(connected.latest_peer_certificate(), id.cert_der);

    server.stop().await;
}

static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

/// Time limit given to certificate fetches in these tests.
const LIMIT_FETCH: Duration = Duration::from_secs(5);

/// A few calls in a row (the first after a restart may fail while the dead
/// connection is noticed; tonic then reconnects through our connector).
async fn probe_with_retries(channel: &Channel) -> bool {
    for _ in 0..3 {
        if probe(channel.clone()).await.is_ok() {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn keepalive_below_two_seconds_is_refused() {
    let id = generate_researcher_identity(None, "127.0.0.1").unwrap();
    let config = pinned_client_config(id.cert_der, None).unwrap();
    let mut opts = ChannelOptions::default();
    opts.keepalive_interval = Duration::from_millis(500);
    let err = within("connect", connect_channel("127.0.0.1", 1, config, &opts))
        .await
        .expect_err("keepalive too short");
    assert!(matches!(err, TlsError::KeepaliveTooShort { .. }), "{err}");
}

/// A listener that answers every connection with `reply` and closes it.
async fn answering_listener(reply: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt as _;
            let _ = socket.write_all(reply).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_peer_that_is_not_tls_is_a_handshake_error() {
    for reply in [&b""[..], &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..]] {
        let (port, task) = answering_listener(reply).await;
        let err = within(
            "fetch",
            fetch_server_certificate("127.0.0.1", port, LIMIT_FETCH, None),
        )
        .await
        .expect_err("no TLS, no certificate");
        assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
        let config = pinned_client_config(
            generate_researcher_identity(None, "127.0.0.1")
                .unwrap()
                .cert_der,
            None,
        )
        .unwrap();
        let err = within(
            "connect",
            connect_channel("127.0.0.1", port, config, &opts()),
        )
        .await
        .expect_err("no TLS, no channel");
        assert!(matches!(err, TlsError::Handshake { .. }), "{err}");
        task.abort();
    }
}

#[tokio::test]
async fn ca_bundle_policy_checks_dns_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_file).unwrap();
    let id = ca
        .issue_researcher_identity("RESEARCHER_dns", "localhost")
        .unwrap();
    let server = TestServer::start(&id, None).await;
    let config = ca_client_config(&ca_file, None).unwrap();
    let channel = within(
        "connect",
        connect_channel("localhost", server.port(), config, &opts()),
    )
    .await
    .expect("certificate for localhost accepted when dialling localhost");
    probe(channel).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn ipv6_loopback_works_when_available() {
    let Ok(listener) = within("bind", TcpListener::bind("[::1]:0")).await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    drop(listener);
    let id = generate_researcher_identity(Some("RESEARCHER_v6"), "::1").unwrap();
    let server = TestServer::start_on_host("::1", 0, &id, None).await;
    let fetched = within(
        "fetch",
        fetch_server_certificate("::1", server.port(), LIMIT_FETCH, None),
    )
    .await
    .unwrap();
    assert_eq!(fetched, id.cert_der);
    for host in ["::1", "[::1]"] {
        let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
        let channel = within(
            "connect",
            connect_channel(host, server.port(), config, &opts()),
        )
        .await
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        probe(channel).await.unwrap();
    }
    server.stop().await;
}

/// A raw rustls server speaking only `versions`, requiring client
/// certificates from `ca`; it completes handshakes and drops connections.
async fn raw_mutual_tls_server(
    id: &ServerIdentity,
    ca: &CertificateAuthority,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> (u16, tokio::task::JoinHandle<()>) {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.cert_chain().unwrap(), id.private_key().unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(socket)).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn fetch_returns_the_certificate_of_a_server_that_wants_a_client_certificate() {
    let ca = CertificateAuthority::generate("node CA").unwrap();
    let id = generate_researcher_identity(Some("RESEARCHER_m"), "127.0.0.1").unwrap();
    for versions in [&TLS12_ONLY[..], &TLS13_ONLY[..]] {
        let (port, task) = raw_mutual_tls_server(&id, &ca, versions).await;
        let fetched = within(
            "fetch",
            fetch_server_certificate("127.0.0.1", port, LIMIT_FETCH, None),
        )
        .await
        .unwrap_or_else(|e| panic!("{versions:?}: {e}"));
        assert_eq!(fetched, id.cert_der);
        task.abort();
    }
}

/// Presents a certificate it does not hold the key of.
#[derive(Debug)]
struct Impostor(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn a_server_without_the_pinned_certificates_key_is_refused() {
    use std::sync::Arc;
    let victim = generate_researcher_identity(Some("RESEARCHER_v"), "127.0.0.1").unwrap();
    let thief = generate_researcher_identity(Some("RESEARCHER_v"), "127.0.0.1").unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(thief.private_key().unwrap())
        .unwrap();
    // The victim's certificate with the thief's key.
    let stolen = Arc::new(rustls::sign::CertifiedKey::new(
        vec![victim.cert_der.clone()],
        signing_key,
    ));
    for versions in [&TLS12_ONLY[..], &TLS13_ONLY[..]] {
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(stolen.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), acceptor.accept(socket)).await;
                });
            }
        });

        let config = pinned_client_config(victim.cert_der.clone(), None).unwrap();
        let err = within(
            "connect",
            connect_channel("127.0.0.1", port, config, &opts()),
        )
        .await
        .expect_err("the pinned certificate without its key must be refused");
        assert!(
            matches!(err, TlsError::Handshake { .. }),
            "{versions:?}: {err}"
        );
        assert_eq!(
            tls_failure_of(&err),
            Some(TlsFailure::ServerCertificateRefused),
            "{versions:?}: {err}"
        );

        let err = within(
            "fetch",
            fetch_server_certificate("127.0.0.1", port, LIMIT_FETCH, None),
        )
        .await
        .expect_err("trust on first use must not record an unproven certificate");
        assert!(
            matches!(err, TlsError::Handshake { .. }),
            "{versions:?}: {err}"
        );
        task.abort();
    }
}

/// A TCP proxy to `upstream` for one connection that forwards bytes until
/// `stall` turns true, then holds both sockets open without forwarding
/// anything (a peer that vanished without closing).
async fn stalling_proxy(
    upstream: u16,
    stall: tokio::sync::watch::Receiver<bool>,
) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
            return;
        };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                    mut to: tokio::net::tcp::OwnedWriteHalf,
                    mut stall: tokio::sync::watch::Receiver<bool>| async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    // Map the guard away: it must not live across an await.
                    _ = async { stall.wait_for(|stalled| *stalled).await.is_ok() } => break,
                    n = from.read(&mut buf) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
            // Stalled: keep both halves alive, forward nothing.
            std::future::pending::<()>().await;
            drop((from, to));
        };
        // Both pumps inside this task, so aborting it closes every socket.
        tokio::join!(
            pump(client_read, server_write, stall.clone()),
            pump(server_read, client_write, stall)
        );
    });
    (port, task)
}

#[tokio::test]
async fn keepalive_detects_a_peer_that_vanished_during_a_long_poll() {
    use fedroute::proto::researcher_service_client::ResearcherServiceClient;
    use fedroute::proto::TaskRequest;
    let id = generate_researcher_identity(Some("RESEARCHER_ka"), "127.0.0.1").unwrap();
    let server = TestServer::start(&id, None).await;
    let (stall, stall_rx) = tokio::sync::watch::channel(false);
    let (proxy_port, proxy) = stalling_proxy(server.port(), stall_rx).await;

    let mut opts = opts();
    opts.keepalive_interval = ChannelOptions::MIN_KEEPALIVE_INTERVAL;
    opts.keepalive_timeout = Duration::from_secs(1);
    let config = pinned_client_config(id.cert_der.clone(), None).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", proxy_port, config, &opts),
    )
    .await
    .unwrap();
    let mut client = ResearcherServiceClient::new(channel);
    let mut poll = within(
        "open the long poll",
        client.get_task_unary(TaskRequest {
            node: "NODE_ka".to_string(),
            protocol_version: "7".to_string(),
        }),
    )
    .await
    .expect("long poll opened")
    .into_inner();

    stall.send(true).unwrap();
    let started = std::time::Instant::now();
    let outcome = within("the long poll to fail", poll.message()).await;
    let detected_after = started.elapsed();
    assert!(
        outcome.is_err(),
        "the long poll ended without error: {outcome:?}"
    );
    eprintln!("dead peer detected after {detected_after:?}");
    assert!(
        detected_after < Duration::from_secs(10),
        "keepalive took {detected_after:?}"
    );
    // Closing the proxy's sockets ends the server's side of the long poll;
    // without that, tonic's graceful shutdown would wait for it forever.
    proxy.abort();
    let _ = proxy.await;
    server.stop().await;
}
