//! The pinned-certificate and CA-bundle trust policies, against the real
//! researcher.

use crate::node_support;

use fedroute::node::{LinkState, ResearcherEndpoint, Status};
use fedroute::tls::{self, TrustPolicy};
use fedroute::wire::{Envelope, PingRequest};
use fedroute_testkit::ca::CertificateAuthority;
use node_support::real::RealResearcher;
use node_support::*;

async fn ping_through(researcher: &mut RealResearcher, trust: TrustPolicy, node: &str) {
    let endpoint = ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port: researcher.port(),
        trust,
        proxy: None,
    };
    let (controller, _seen) = start_node(node, vec![endpoint], fast_config(), true);
    researcher.connected(node).await;
    let request = Envelope::from_typed(&PingRequest::new(researcher.id())).unwrap();
    let reply = researcher.request(node, request.clone()).await;
    assert_eq!(reply.request_id(), request.request_id());
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        status.researcher_id.as_deref(),
        Some(researcher.id().as_str())
    );
}

#[actix_rt::test]
async fn a_pinned_certificate_file_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let identity = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
    let (cert, key) = (dir.path().join("r.pem"), dir.path().join("r.key"));
    identity.write_pem(&cert, &key).unwrap();
    let mut researcher = RealResearcher::start_with_identity(cert.clone(), key).await;
    ping_through(
        &mut researcher,
        TrustPolicy::PinnedCertificate(cert),
        "NODE_pin",
    )
    .await;
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn a_ca_bundle_is_trusted_and_the_id_read_from_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_file).unwrap();
    let identity = ca
        .issue_researcher_identity("RESEARCHER_ca_signed", "127.0.0.1")
        .unwrap();
    let (cert, key) = (dir.path().join("r.pem"), dir.path().join("r.key"));
    identity.write_pem(&cert, &key).unwrap();
    let mut researcher = RealResearcher::start_with_identity(cert, key).await;
    assert_eq!(researcher.id(), "RESEARCHER_ca_signed");
    ping_through(&mut researcher, TrustPolicy::CaBundle(ca_file), "NODE_ca").await;
    researcher.shutdown().await;
}

#[actix_rt::test]
async fn a_certificate_that_does_not_match_the_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
    let pinned_file = dir.path().join("pinned.pem");
    pinned
        .write_pem(&pinned_file, &dir.path().join("pinned.key"))
        .unwrap();
    // The researcher serves another certificate.
    let researcher = RealResearcher::start(0, None).await;
    let endpoint = ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port: researcher.port(),
        trust: TrustPolicy::PinnedCertificate(pinned_file),
        proxy: None,
    };
    let (controller, _seen) = start_node("NODE_bad_pin", vec![endpoint], fast_config(), false);
    wait_until("a refused handshake", || {
        let c = controller.clone();
        async move { c.send(Status).await.unwrap()[0].last_error.is_some() }
    })
    .await;
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_ne!(status.state, LinkState::Connected);
    assert!(!status.polling);
    researcher.shutdown().await;
}
