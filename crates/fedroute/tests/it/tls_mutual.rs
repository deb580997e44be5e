//! Mutual TLS as Fed-BioMed designs it, and stricter: registered node
//! certificates (`ListenSettings::trusted_nodes`) and a client CA, the
//! refusal of any other certificate in the handshake, the node id checked on
//! every call, Fed-BioMed's node probe, and a node that stops for good when
//! a researcher refuses its identity.

use crate::{node_support, researcher_support, tls_support};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fedroute::node::{ControllerConfig, FinishReason, LinkState, ResearcherEndpoint, Status};
use fedroute::proto::feedback_message::{FeedbackType, Log};
use fedroute::proto::FeedbackMessage;
use fedroute::researcher::{self, Request, ResearcherConfig, ResearcherHandle};
use fedroute::tls::{self, generate_node_identity, ClientIdentity, TrustPolicy};
use fedroute_testkit::ca::CertificateAuthority;
use fedroute_testkit::process::output_bounded;
use researcher_support::*;
use tls_support::{first_byte_after_handshake, tls_failure_of, TlsFailure};
use tonic::Code;

/// A researcher configuration requiring the certificates registered in `dir`.
fn trusting(dir: &Path) -> ResearcherConfig {
    let mut cfg = config();
    cfg.listen.trusted_nodes = Some(dir.to_path_buf());
    cfg
}

/// Registers a node certificate: copies its PEM into the directory.
fn register(dir: &Path, node_id: &str, cert_pem: &str) {
    std::fs::write(dir.join(format!("{node_id}.pem")), cert_pem).unwrap();
}

/// The outcome of a TLS connection presenting `identity` (none: no client
/// certificate): `Ok` when the researcher serves it (its HTTP/2 SETTINGS
/// come), the failure when it refuses the handshake.
async fn connect_as(
    handle: &ResearcherHandle,
    identity: Option<&ClientIdentity>,
) -> Result<u8, TlsFailure> {
    let config = tls::pinned_client_config(handle.cert_der.clone(), identity).unwrap();
    first_byte_after_handshake(handle.local_addr, config)
        .await
        .map_err(|e| tls_failure_of(&e).unwrap_or_else(|| TlsFailure::Other(e.to_string())))
}

/// The first byte of an HTTP/2 SETTINGS frame (its length's high byte).
const SETTINGS_FIRST_BYTE: u8 = 0;

#[actix_rt::test]
async fn a_node_registered_while_the_researcher_runs_is_served_at_its_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, mut events) = start(trusting(dir.path())).await;
    let node = generate_node_identity("NODE_late").unwrap();
    let identity = node.client_identity().unwrap();

    assert_eq!(
        connect_as(&handle, Some(&identity)).await,
        Err(TlsFailure::ClientCertificateRefused)
    );

    register(dir.path(), "NODE_late", &node.cert_pem);
    assert_eq!(
        connect_as(&handle, Some(&identity)).await,
        Ok(SETTINGS_FIRST_BYTE)
    );
    // And gRPC works on such a connection: the node polls and is seen.
    let client = client_with(&handle, Some(&identity)).await.unwrap();
    let _poll = spawn_poll(&client, "NODE_late");
    events.connected("NODE_late").await;
}

#[actix_rt::test]
async fn a_node_may_poll_reply_and_send_feedback_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let alice = generate_node_identity("NODE_alice").unwrap();
    register(dir.path(), "NODE_alice", &alice.cert_pem);
    let (handle, mut events) = start(trusting(dir.path())).await;
    let mut client = client_with(&handle, Some(&alice.client_identity().unwrap()))
        .await
        .unwrap();

    // Polls for another node, unary and streaming.
    let status = bounded(
        "unary poll",
        client.get_task_unary(task_request("NODE_bob")),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let requests = tokio_stream::iter(vec![task_request("NODE_bob")]);
    let status = bounded("streaming poll", client.get_task(requests))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Its own poll works, end to end.
    let poller = spawn_poll(&client, "NODE_alice");
    events.connected("NODE_alice").await;
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: "NODE_alice".into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = bounded("poll", poller).await.unwrap().unwrap();

    // A reply as another node is refused; its own resolves the request.
    let status = reply(&mut client, &[pong(&task, "NODE_bob")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    reply(&mut client, &[pong(&task, "NODE_alice")])
        .await
        .unwrap();
    bounded("request", ask).await.unwrap().unwrap().unwrap();

    // Feedback: the message's node_id and the log record's inside it.
    let feedback = |node: &str, msg: String| FeedbackMessage {
        protocol_version: "7".into(),
        researcher_id: Some(handle.researcher_id.clone()),
        feedback_type: Some(FeedbackType::Log(Log {
            node_id: node.into(),
            level: "INFO".into(),
            msg,
        })),
    };
    let record = |node: &str| fedroute::wire::Log::fedbiomed(node, "n", "INFO", "hi").msg;
    for (node, inner) in [("NODE_bob", "NODE_bob"), ("NODE_alice", "NODE_bob")] {
        let status = bounded("feedback", client.feedback(feedback(node, record(inner))))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{node}/{inner}: {status:?}"
        );
    }
    bounded(
        "feedback",
        client.feedback(feedback("NODE_alice", record("NODE_alice"))),
    )
    .await
    .unwrap();

    // Its own streaming poll opens.
    let requests = tokio_stream::iter(vec![task_request("NODE_alice")]);
    bounded("streaming poll", client.get_task(requests))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn certificates_outside_the_directory_and_the_ca_are_refused_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let ca_path = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_path).unwrap();
    let other_ca = CertificateAuthority::generate("other CA").unwrap();
    let nodes = dir.path().join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    let registered = generate_node_identity("NODE_reg").unwrap();
    register(&nodes, "NODE_reg", &registered.cert_pem);

    let registered = registered.client_identity().unwrap();
    let unregistered = generate_node_identity("NODE_reg")
        .unwrap()
        .client_identity()
        .unwrap();
    let signed = ca
        .issue_node_identity("NODE_ca")
        .unwrap()
        .client_identity()
        .unwrap();
    let foreign = other_ca
        .issue_node_identity("NODE_ca")
        .unwrap()
        .client_identity()
        .unwrap();

    let refused = Err(TlsFailure::ClientCertificateRefused);
    let served = Ok(SETTINGS_FIRST_BYTE);
    let cases = [
        ("registered nodes", Some(&nodes), None),
        ("client CA", None, Some(&ca_path)),
        ("both", Some(&nodes), Some(&ca_path)),
    ];
    for (mode, trusted_nodes, client_ca) in cases {
        let mut cfg = config();
        cfg.listen.trusted_nodes = trusted_nodes.cloned();
        cfg.listen.client_ca = client_ca.cloned();
        let (handle, _events) = start(cfg).await;
        let expect = |ok: bool| if ok { served.clone() } else { refused.clone() };
        for (who, identity, accepted) in [
            ("no certificate", None, false),
            (
                "a registered certificate",
                Some(&registered),
                trusted_nodes.is_some(),
            ),
            (
                "another certificate of a registered node",
                Some(&unregistered),
                false,
            ),
            (
                "a certificate of the CA",
                Some(&signed),
                client_ca.is_some(),
            ),
            ("a certificate of another CA", Some(&foreign), false),
        ] {
            assert_eq!(
                connect_as(&handle, identity).await,
                expect(accepted),
                "{mode}: {who}"
            );
        }
        handle.shutdown().await.unwrap();
    }
}

#[actix_rt::test]
async fn start_fails_naming_a_missing_directory_or_a_file_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let e = researcher::start(trusting(&missing), None)
        .await
        .unwrap_err();
    let text = fedroute::ErrorChain(&e).to_string();
    assert!(text.contains("no-such-dir"), "{text}");

    std::fs::write(dir.path().join("broken.pem"), "not a certificate").unwrap();
    let e = researcher::start(trusting(dir.path()), None)
        .await
        .unwrap_err();
    let text = fedroute::ErrorChain(&e).to_string();
    assert!(text.contains("broken.pem"), "{text}");
}

/// Fed-BioMed's node probe (`transport/client.py`), verbatim but for the
/// verdict printed: a TLS connection with ALPN h2 and no client
/// certificate, then `recv(1)`. A timeout is told apart (the researcher
/// must answer promptly either way).
const PROBE: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["h2"])
try:
    with socket.create_connection((host, port), timeout=2) as sock:
        with context.wrap_socket(sock, server_hostname=host) as ssock:
            ssock.settimeout(2)
            print("requires" if not ssock.recv(1) else "does not require")
except TimeoutError as e:
    print("timeout", e)
except (ssl.SSLError, OSError) as e:
    print("requires", type(e).__name__, e)
"#;

/// Runs the probe against `handle`; its verdict line.
async fn fedbiomed_probe(python: &str, handle: &ResearcherHandle) -> String {
    let mut command = Command::new(python);
    command
        .args(["-c", PROBE, "127.0.0.1"])
        .arg(handle.local_addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("run python3");
    let (status, out, err) = bounded(
        "the probe",
        tokio::task::spawn_blocking(move || output_bounded(child, Duration::from_secs(20))),
    )
    .await
    .expect("probe thread");
    assert!(status.success(), "probe failed: {out}{err}");
    out.trim().to_string()
}

#[actix_rt::test]
async fn fedbiomed_probe_sees_whether_the_researcher_requires_a_client_certificate() {
    let python = std::env::var("FEDROUTE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if Command::new(&python)
        .args(["-c", "import ssl"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("no Python with ssl ({python}); skipping (set FEDROUTE_PYTHON)");
        return;
    }
    let (plain, _events) = start(config()).await;
    let verdict = fedbiomed_probe(&python, &plain).await;
    assert_eq!(verdict, "does not require");

    let dir = tempfile::tempdir().unwrap();
    let (mutual, _events) = start(trusting(dir.path())).await;
    let verdict = fedbiomed_probe(&python, &mutual).await;
    eprintln!("probe of a researcher with mutual TLS: {verdict}");
    assert!(verdict.starts_with("requires"), "{verdict}");
}

#[actix_rt::test]
async fn a_node_refused_as_unauthenticated_stops_its_link_for_good_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let ca_path = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_path).unwrap();
    let mut cfg = config();
    cfg.listen.client_ca = Some(ca_path);
    let (handle, _events) = start(cfg).await;
    let pin = dir.path().join("researcher.pem");
    std::fs::write(&pin, tls::certificate_pem(&handle.cert_der)).unwrap();

    // Signed by the CA, so the handshake passes; but it names no node.
    let nobody = ca.issue_unnamed_identity().unwrap();
    let mut config: ControllerConfig = node_support::fast_config();
    config.client_identity = Some(nobody.client_identity().unwrap());
    let endpoint = ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port: handle.local_addr.port(),
        trust: TrustPolicy::PinnedCertificate(pin),
        proxy: None,
    };
    let key = endpoint.key();
    let (controller, mut seen, mut finished) =
        node_support::start_node_with_finish("NODE_nobody", vec![endpoint], config);
    let finished = node_support::within("the node to finish", finished.recv())
        .await
        .unwrap();
    assert_eq!(finished.reason, FinishReason::AllLinksFailed);
    let status = node_support::within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    match &status.state {
        LinkState::Failed(reason) => {
            assert!(reason.contains(&key), "{reason}");
            assert!(reason.contains("UNAUTHENTICATED"), "{reason}");
            assert!(reason.contains("names no node"), "{reason}");
        }
        other => panic!("expected a failed link, got {other}"),
    }
    assert_eq!(status.reconnects, 0, "{status:?}");
    assert!(seen.try_recv().is_err());
}
