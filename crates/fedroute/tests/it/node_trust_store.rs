//! Trust on first use that holds, against the real researcher over TLS: a
//! node remembers the certificate it trusted a researcher with; another
//! process with another certificate but the same researcher id on the same
//! endpoint (a man in the middle) gets nothing, and the link says why; the
//! real researcher coming back is served again; a certificate rotated with
//! a proof by the remembered key is accepted, one with a proof by another
//! key is not; `TrustSameResearcherId` accepts any certificate with the id.

use crate::node_support;

use std::time::{Duration, Instant};

use actix::Addr;
use fedroute::node::{Controller, ControllerConfig, LinkState, LinkStatus, SendReply, Status};
use fedroute::researcher::ResearcherEvent;
use fedroute::tls::{Acceptance, Fingerprint, IdentityDir, TrustPolicy, TrustStore};
use node_support::real::RealResearcher;
use node_support::*;

/// Fast reconnects, and the trust store in `state`.
fn config(state: &std::path::Path) -> ControllerConfig {
    let mut config = fast_config();
    config.reconnect.backoff_first = Duration::from_millis(20);
    config.reconnect.backoff_max = Duration::from_millis(100);
    config.state_dir = Some(state.to_path_buf());
    config
}

fn node(id: &str, port: u16, trust: TrustPolicy, config: ControllerConfig) -> Addr<Controller> {
    let endpoint = fedroute::node::ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port,
        trust,
        proxy: None,
    };
    start_node(id, vec![endpoint], config, true).0
}

async fn status(c: &Addr<Controller>) -> LinkStatus {
    within("status", c.send(Status)).await.unwrap().remove(0)
}

/// Waits until the link reports a refused certificate; returns its status.
async fn refused(c: &Addr<Controller>) -> LinkStatus {
    within("the link to refuse the certificate", async {
        loop {
            let s = status(c).await;
            if matches!(s.state, LinkState::CertificateChanged { .. }) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A process on the real researcher's port with its own certificate and
/// the real researcher's id.
async fn impostor_of(port: u16, id: &str) -> RealResearcher {
    RealResearcher::start(port, Some(id)).await
}

/// Checks that `impostor` heard nothing from any node.
fn heard_nothing(impostor: &mut RealResearcher) {
    while let Ok(event) = impostor.events.try_recv() {
        assert!(
            !matches!(
                event,
                ResearcherEvent::NodeConnected { .. }
                    | ResearcherEvent::UnmatchedReply(_)
                    | ResearcherEvent::Feedback(_)
            ),
            "the impostor was served: {event:?}"
        );
    }
}

async fn man_in_the_middle(restart_node_in_between: bool) {
    let _ = env_logger::builder().is_test(true).try_init();
    let researcher_state = tempfile::tempdir().unwrap();
    let node_state = tempfile::tempdir().unwrap();
    let mut real = RealResearcher::start_in(0, researcher_state.path()).await;
    let (port, id) = (real.port(), real.id());
    let real_fp = Fingerprint::of(&real.handle.cert_der);
    let mut c = node(
        "NODE_mitm",
        port,
        TrustPolicy::TrustOnFirstUse,
        config(node_state.path()),
    );
    real.connected("NODE_mitm").await;
    assert_eq!(
        status(&c).await.certificate_accepted,
        Some(Acceptance::FirstUse)
    );
    real.shutdown().await;
    drop(real);
    if restart_node_in_between {
        within(
            "shutdown",
            c.send(fedroute::node::Shutdown {
                deadline: Duration::from_secs(1),
            }),
        )
        .await
        .unwrap();
        // The store on disk is what the new node process reads back.
        let store = TrustStore::open(&node_state.path().join(TrustStore::FILE_NAME)).unwrap();
        assert_eq!(
            store.get(&format!("127.0.0.1:{port}")).unwrap().fingerprint,
            real_fp
        );
    }

    let mut impostor = impostor_of(port, &id).await;
    let impostor_fp = Fingerprint::of(&impostor.handle.cert_der);
    assert_ne!(impostor_fp, real_fp);
    if restart_node_in_between {
        c = node(
            "NODE_mitm",
            port,
            TrustPolicy::TrustOnFirstUse,
            config(node_state.path()),
        );
    }
    // A reply queued now must go to the real researcher only.
    within(
        "send",
        c.send(SendReply(ping_reply(
            &ping_request(&id, "held"),
            "NODE_mitm",
        ))),
    )
    .await
    .unwrap()
    .unwrap();
    let s = refused(&c).await;
    assert_eq!(
        s.state,
        LinkState::CertificateChanged {
            recorded: real_fp,
            presented: impostor_fp
        }
    );
    let why = s.last_error.unwrap();
    for needed in [
        real_fp.to_string(),
        impostor_fp.to_string(),
        "fedroute trust forget".to_string(),
        node_state.path().display().to_string(),
    ] {
        assert!(why.contains(&needed), "{needed:?} missing from: {why}");
    }
    heard_nothing(&mut impostor);
    impostor.shutdown().await;
    heard_nothing(&mut impostor);
    drop(impostor);

    // The link kept retrying with its back-off: the real researcher is
    // served again without anyone touching the node.
    let mut real = RealResearcher::start_in(port, researcher_state.path()).await;
    let back = Instant::now();
    real.connected("NODE_mitm").await;
    let served_after = back.elapsed();
    println!("node_trust_store: the real researcher was served again {served_after:?} after it came back");
    assert!(
        served_after < Duration::from_secs(1),
        "served again only after {served_after:?}"
    );
    assert_eq!(
        real.unmatched_reply().await.request_id(),
        Some("held"),
        "the reply queued during the impostor's time reaches the real researcher"
    );
    assert_eq!(status(&c).await.state, LinkState::Connected);
    real.shutdown().await;
}

#[actix_rt::test]
async fn a_man_in_the_middle_with_the_researcher_id_gets_nothing_and_the_real_researcher_is_served_again(
) {
    man_in_the_middle(false).await;
}

#[actix_rt::test]
async fn the_trust_store_is_read_back_by_a_restarted_node() {
    man_in_the_middle(true).await;
}

#[actix_rt::test]
async fn a_rotated_certificate_is_accepted_by_its_proof_and_a_forged_rotation_is_not() {
    let _ = env_logger::builder().is_test(true).try_init();
    let researcher_state = tempfile::tempdir().unwrap();
    let node_state = tempfile::tempdir().unwrap();
    let mut real = RealResearcher::start_in(0, researcher_state.path()).await;
    let (port, id) = (real.port(), real.id());
    let c = node(
        "NODE_rot",
        port,
        TrustPolicy::TrustOnFirstUse,
        config(node_state.path()),
    );
    real.connected("NODE_rot").await;
    real.shutdown().await;
    drop(real);

    // A stranger with the same id "rotates" its own key: the proof is
    // valid, but by a key the node never trusted.
    let stranger_state = tempfile::tempdir().unwrap();
    let stranger = IdentityDir::new(stranger_state.path());
    stranger
        .load_or_generate(Some(&id), &["127.0.0.1"])
        .unwrap();
    stranger.rotate(&["127.0.0.1"]).unwrap();
    let mut forged = RealResearcher::start_in(port, stranger_state.path()).await;
    let s = refused(&c).await;
    let why = s.last_error.unwrap();
    assert!(why.contains("signed by the key of certificate"), "{why}");
    heard_nothing(&mut forged);
    forged.shutdown().await;
    drop(forged);

    // The real researcher rotates: accepted by its proof, and recorded.
    IdentityDir::new(researcher_state.path())
        .rotate(&["127.0.0.1"])
        .unwrap();
    let mut rotated = RealResearcher::start_in(port, researcher_state.path()).await;
    rotated.connected("NODE_rot").await;
    assert_eq!(
        status(&c).await.certificate_accepted,
        Some(Acceptance::RotationProof)
    );
    let store = TrustStore::open(&node_state.path().join(TrustStore::FILE_NAME)).unwrap();
    let entry = store.get(&format!("127.0.0.1:{port}")).unwrap();
    assert_eq!(entry.fingerprint, Fingerprint::of(&rotated.handle.cert_der));
    assert_eq!(entry.accepted, Acceptance::RotationProof);
    rotated.shutdown().await;
}

#[actix_rt::test]
async fn trust_same_id_accepts_another_certificate_with_the_researcher_id() {
    let _ = env_logger::builder().is_test(true).try_init();
    let node_state = tempfile::tempdir().unwrap();
    let mut first = RealResearcher::start(0, None).await;
    let (port, id) = (first.port(), first.id());
    let c = node(
        "NODE_same",
        port,
        TrustPolicy::TrustSameResearcherId,
        config(node_state.path()),
    );
    first.connected("NODE_same").await;
    first.shutdown().await;
    drop(first);
    // A Fed-BioMed researcher that regenerated its certificate.
    let mut second = impostor_of(port, &id).await;
    second.connected("NODE_same").await;
    assert_eq!(
        status(&c).await.certificate_accepted,
        Some(Acceptance::SameResearcherId)
    );
    second.shutdown().await;
}
