//! Security with the real node controller and the real researcher: mutual
//! TLS (a node is who its certificate says: an unauthenticated node, a node
//! polling under another id, a certificate from another CA are refused; a
//! node cannot reply as another), and a researcher id change refused.
//! tests/researcher_mtls.rs covers the same refusals with a raw client.

use crate::faults_support;
use fedroute_testkit::node::PingHandler;
use tokio::sync::mpsc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use faults_support::{within, Crashable};
use fedroute::node::{
    Controller, ControllerConfig, IsConnected, LinkState, LinkStatus, ResearcherEndpoint,
    SendReply, Status,
};
use fedroute::researcher::{Request, ResearcherConfig, ResearcherEvent};
use fedroute::tls::ClientIdentity;
use fedroute::wire::{Envelope, PingReply, PingRequest, Value};
use fedroute_testkit::ca::CertificateAuthority;

fn node(id: &str, port: u16, identity: Option<ClientIdentity>) -> Addr<Controller> {
    let app = PingHandler {
        node_id: id.into(),
        seen: mpsc::unbounded_channel().0,
        answer: true,
    }
    .start();
    let mut config = ControllerConfig::default();
    config.reconnect.backoff_first = Duration::from_millis(10);
    config.reconnect.backoff_max = Duration::from_millis(200);
    config.channel.connect_timeout = Duration::from_secs(2);
    config.client_identity = identity;
    Controller::builder(id)
        .name(id)
        .researcher(ResearcherEndpoint::trust_on_first_use("127.0.0.1", port))
        .config(config)
        .start(app.recipient())
        .expect("the controller starts")
}

async fn link(c: &Addr<Controller>) -> LinkStatus {
    within("status", c.send(Status)).await.unwrap().remove(0)
}

/// Waits until the link reports an error (a refusal) or fails for good.
async fn refused(c: &Addr<Controller>) -> LinkStatus {
    within("the link reports a refusal", async {
        loop {
            let s = link(c).await;
            if s.last_error.is_some() || matches!(s.state, LinkState::Failed(_)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn unsolicited(researcher_id: &str, node: &str, tag: &str) -> Envelope {
    let mut e = Envelope::from_typed(&PingReply::answer(
        &Envelope::from_typed(&PingRequest::new(researcher_id.to_string())).unwrap(),
        node,
        "n",
    ))
    .unwrap();
    e.set("tag", Value::Str(tag.into()));
    e
}

fn ca_file(ca: &CertificateAuthority, dir: &tempfile::TempDir) -> PathBuf {
    let p = dir.path().join("ca.pem");
    ca.write_cert_pem(&p).unwrap();
    p
}

#[actix_rt::test]
async fn with_mutual_tls_a_node_is_who_its_certificate_says() {
    let _ = env_logger::builder().is_test(true).try_init();
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ResearcherConfig::default();
    config.listen.address = "127.0.0.1:0".parse().unwrap();
    config.listen.client_ca = Some(ca_file(&ca, &dir));
    let mut r = Crashable::start(config);
    let port = r.addr.port();
    let alice_id = ca
        .issue_node_identity("NODE_alice")
        .unwrap()
        .client_identity()
        .unwrap();

    // Alice, with her certificate: a full request/reply round.
    let alice = node("NODE_alice", port, Some(alice_id.clone()));
    r.connected("NODE_alice").await;
    let ping = Envelope::from_typed(&PingRequest::new(r.researcher_id.clone())).unwrap();
    let answer = within(
        "alice answers",
        r.actor.send(Request {
            node_id: "NODE_alice".into(),
            message: ping.clone(),
            timeout: Duration::from_secs(20),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer.node_id(), Some("NODE_alice"));

    // Bob presenting Alice's certificate, Carol with none, Mallory with a
    // certificate for "NODE_alice" from another CA: all refused.
    let other = CertificateAuthority::generate("other CA").unwrap();
    let mallory_id = other
        .issue_node_identity("NODE_alice")
        .unwrap()
        .client_identity()
        .unwrap();
    let bob = node("NODE_bob", port, Some(alice_id.clone()));
    let carol = node("NODE_carol", port, None);
    let mallory = node("NODE_alice", port, Some(mallory_id));
    for (name, c) in [("bob", &bob), ("carol", &carol), ("mallory", &mallory)] {
        let s = refused(c).await;
        eprintln!(
            "security: {name} refused: {:?} / {:?}",
            s.state, s.last_error
        );
        assert!(!within("is connected", c.send(IsConnected)).await.unwrap());
        assert_eq!(s.messages_received, 0, "{name} received a task");
    }

    // Alice cannot reply as Bob: the forged reply is refused, the genuine
    // one after it arrives.
    let forged = unsolicited(&r.researcher_id, "NODE_bob", "forged");
    let genuine = unsolicited(&r.researcher_id, "NODE_alice", "genuine");
    within("send", alice.send(SendReply(forged)))
        .await
        .unwrap()
        .unwrap();
    within("send", alice.send(SendReply(genuine)))
        .await
        .unwrap()
        .unwrap();
    // Replies travel at least once: the refusal cuts Alice's open reply
    // stream, so her earlier (already answered) PingReply may come again,
    // untagged; the researcher reports it as matching no request.
    let got = loop {
        let got = r.unmatched(1).await.remove(0);
        if got.class() == "PingReply" && got.get("tag").is_none() {
            continue;
        }
        break got;
    };
    assert_eq!(got.node_id(), Some("NODE_alice"));
    assert_eq!(got.get("tag").and_then(Value::as_str), Some("genuine"));

    // The researcher never saw Bob or Carol, nor any reply from them.
    while let Ok(ev) = r.events.try_recv() {
        match &ev {
            ResearcherEvent::NodeConnected { node_id } => {
                assert_eq!(node_id, "NODE_alice", "{ev:?}")
            }
            ResearcherEvent::UnmatchedReply(e)
                if e.class() == "PingReply" && e.get("tag").is_none() =>
            {
                assert_eq!(e.node_id(), Some("NODE_alice"), "{e:?}")
            }
            ResearcherEvent::UnmatchedReply(e) => panic!("unexpected reply {e:?}"),
            _ => {}
        }
    }
    // Alice stays served (a rejection makes her link reconnect once).
    within("alice connected", async {
        while !alice.send(IsConnected).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_researcher_back_with_another_id_is_refused_and_reported() {
    let _ = env_logger::builder().is_test(true).try_init();
    let config = |port: u16, id: &str| {
        let mut config = ResearcherConfig::default();
        config.listen.address = SocketAddr::from(([127, 0, 0, 1], port));
        config.listen.researcher_id = Some(id.to_string());
        config
    };
    let mut first = Crashable::start(config(0, "RESEARCHER_first"));
    let port = first.addr.port();
    let c = node("NODE_n", port, None);
    first.connected("NODE_n").await;
    first.kill();
    let mut impostor = Crashable::start(config(port, "RESEARCHER_impostor"));
    let s = within("the link fails", async {
        loop {
            let s = link(&c).await;
            if matches!(s.state, LinkState::Failed(_)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let LinkState::Failed(reason) = &s.state else {
        unreachable!()
    };
    assert!(reason.contains("RESEARCHER_impostor"), "{reason}");
    assert_eq!(s.researcher_id.as_deref(), Some("RESEARCHER_first"));
    // The impostor never got a poll, and nothing is sent to it.
    while let Ok(ev) = impostor.events.try_recv() {
        assert!(
            !matches!(ev, ResearcherEvent::NodeConnected { .. }),
            "the impostor got a poll: {ev:?}"
        );
    }
    let r = within(
        "send",
        c.send(SendReply(unsolicited("RESEARCHER_first", "NODE_n", "x"))),
    )
    .await
    .unwrap();
    assert!(r.is_err(), "a send to a failed link was accepted");
}
