//! No secret or key material in logs: every log record (all crates, trace
//! level) of a mutual-TLS session with identities loaded from PEM files, of
//! refused handshakes and of identity errors is captured and searched for
//! PEM markers and for pieces of the private keys. Also: plaintext mode is
//! announced with a warning.

use crate::faults_support;
use fedroute_testkit::node::PingHandler;
use tokio::sync::mpsc;

use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use faults_support::{within, Crashable};
use fedroute::node::{Controller, ControllerConfig, ResearcherEndpoint, Status};
use fedroute::researcher::{Request, ResearcherConfig};
use fedroute::tls::{self, ClientIdentity};
use fedroute::wire::{Envelope, PingRequest};
use fedroute_testkit::ca::CertificateAuthority;

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("{} {} {}", r.level(), r.target(), r.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn node(port: u16, identity: Option<ClientIdentity>) -> Addr<Controller> {
    let app = PingHandler {
        node_id: "NODE_log".into(),
        seen: mpsc::unbounded_channel().0,
        answer: true,
    }
    .start();
    Controller::builder("NODE_log")
        .name("n")
        .researchers(vec![ResearcherEndpoint::trust_on_first_use(
            "127.0.0.1",
            port,
        )])
        .config({
            let mut config = ControllerConfig::default();
            config.reconnect.backoff_first = Duration::from_millis(10);
            config.reconnect.backoff_max = Duration::from_millis(100);
            config.client_identity = identity;
            config
        })
        .start(app.recipient())
        .expect("the controller starts")
}

/// Base64 lines of the PEM body (the secret part of a key).
fn key_pieces(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(|l| l[..16].to_string())
        .collect()
}

#[actix_rt::test]
async fn no_key_material_reaches_the_logs() {
    // It installs process-wide state (see `rerun_alone`).
    if fedroute_testkit::process::rerun_alone("security_logs::no_key_material_reaches_the_logs") {
        return;
    }
    let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
    log::set_logger(capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("log test CA").unwrap();
    let ca_path = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_path).unwrap();
    let server = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
    let (cert, key) = (dir.path().join("r.pem"), dir.path().join("r.key"));
    server.write_pem(&cert, &key).unwrap();
    let node_identity = ca.issue_node_identity("NODE_log").unwrap();
    let (ncert, nkey) = (dir.path().join("n.pem"), dir.path().join("n.key"));
    node_identity.write_pem(&ncert, &nkey).unwrap();
    let mut secrets = key_pieces(&server.key_pem);
    secrets.extend(key_pieces(&node_identity.key_pem));
    assert!(secrets.len() >= 2);

    // Identities and their errors, as they would be logged.
    let client = ClientIdentity::load(&ncert, &nkey).unwrap();
    log::info!("identities: {server:?} {node_identity:?} {client:?} {ca:?}");
    let other = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
    if let Err(e) = tls::ServerIdentity::from_pem(&server.cert_pem, &other.key_pem) {
        log::error!("mismatched key: {e} / {e:?}");
    }
    if let Err(e) = ClientIdentity::from_pem(&node_identity.key_pem, &node_identity.cert_pem) {
        log::error!("swapped files: {e} / {e:?}");
    }
    let mut config = ResearcherConfig::default();
    config.listen.address = "127.0.0.1:0".parse().unwrap();
    config.listen.identity = Some((cert.clone(), key.clone()));
    config.listen.client_ca = Some(ca_path.clone());
    log::info!("config: {config:?}");

    // A mutual-TLS session with a round trip, and refused handshakes.
    let mut r = Crashable::start(config);
    let port = r.addr.port();
    let good = node(port, Some(client.clone()));
    r.connected("NODE_log").await;
    let ping = Envelope::from_typed(&PingRequest::new(r.researcher_id.clone())).unwrap();
    within(
        "round trip",
        r.actor.send(Request {
            node_id: "NODE_log".into(),
            message: ping,
            timeout: Duration::from_secs(20),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let anonymous = node(port, None);
    within("refusal", async {
        loop {
            let s = anonymous.send(Status).await.unwrap().remove(0);
            if s.last_error.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for c in [&good, &anonymous] {
        let _ = within(
            "shutdown",
            c.send(fedroute::node::Shutdown {
                deadline: Duration::from_secs(1),
            }),
        )
        .await;
    }
    r.kill();

    // Plaintext is announced.
    let mut plain = Crashable::start({
        let mut config = ResearcherConfig::default();
        config.listen.address = "127.0.0.1:0".parse().unwrap();
        config.listen.insecure = true;
        config
    });
    plain.kill();

    let lines = capture.0.lock().unwrap().clone();
    assert!(
        lines.len() > 20,
        "too few log lines captured: {}",
        lines.len()
    );
    let mut leaks = Vec::new();
    for l in &lines {
        let upper = l.to_uppercase();
        if upper.contains("-----BEGIN") || upper.contains("PRIVATE KEY") {
            leaks.push(l.clone());
        }
        if secrets.iter().any(|s| l.contains(s.as_str())) {
            leaks.push(l.clone());
        }
    }
    assert!(
        leaks.is_empty(),
        "key material in logs:\n{}",
        leaks.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.to_uppercase().contains("PLAINTEXT")),
        "plaintext mode was not announced with a warning"
    );
    eprintln!("security_logs: {} log lines checked", lines.len());
}
