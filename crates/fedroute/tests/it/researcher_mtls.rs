//! Mutual TLS: with `client_ca`, a poll, a reply or feedback is accepted only
//! for the node id of the client certificate.

use crate::researcher_support;

use fedroute::proto::feedback_message::{FeedbackType, Log};
use fedroute::proto::FeedbackMessage;
use fedroute::researcher::Request;
use fedroute_testkit::ca::CertificateAuthority;
use researcher_support::*;
use tonic::Code;

#[actix_rt::test]
async fn client_certificate_decides_the_node_id() {
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_path).unwrap();
    let mut cfg = config();
    cfg.listen.client_ca = Some(ca_path);
    let (handle, mut events) = start(cfg).await;

    let alice = ca
        .issue_node_identity("NODE_alice")
        .unwrap()
        .client_identity()
        .unwrap();
    let mut client = client_with(&handle, Some(&alice)).await.unwrap();

    // Polling under another node's id is refused.
    let status = bounded("poll", client.get_task_unary(task_request("NODE_bob")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Its own id works end to end.
    let poller = spawn_poll(&client, "NODE_alice");
    events.connected("NODE_alice").await;
    let request = ping(&handle);
    let ask = tokio::spawn(handle.addr.send(Request {
        node_id: "NODE_alice".into(),
        message: request.clone(),
        timeout: T,
    }));
    let task = bounded("poll", poller).await.unwrap().unwrap();

    // A reply claiming to come from another node is refused...
    let status = reply(&mut client, &[pong(&task, "NODE_bob")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // ...the genuine one resolves the request.
    reply(&mut client, &[pong(&task, "NODE_alice")])
        .await
        .unwrap();
    bounded("request", ask).await.unwrap().unwrap().unwrap();

    let feedback = |node: &str| FeedbackMessage {
        protocol_version: "7".into(),
        researcher_id: Some(handle.researcher_id.clone()),
        feedback_type: Some(FeedbackType::Log(Log {
            node_id: node.into(),
            level: "INFO".into(),
            msg: "hi".into(),
        })),
    };
    let status = bounded("feedback", client.feedback(feedback("NODE_bob")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    bounded("feedback", client.feedback(feedback("NODE_alice")))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn clients_without_a_certificate_are_refused() {
    let ca = CertificateAuthority::generate("fedroute test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    ca.write_cert_pem(&ca_path).unwrap();
    let mut cfg = config();
    cfg.listen.client_ca = Some(ca_path);
    let (handle, _events) = start(cfg).await;

    // TLS 1.3: the refusal shows at the first call, if not at connect.
    if let Ok(mut client) = client_with(&handle, None).await {
        let status = bounded("poll", client.get_task_unary(task_request("NODE_eve")))
            .await
            .unwrap_err();
        assert_ne!(status.code(), Code::Ok);
    }
    // A certificate from another CA is refused as well.
    let other = CertificateAuthority::generate("other CA").unwrap();
    let mallory = other
        .issue_node_identity("NODE_alice")
        .unwrap()
        .client_identity()
        .unwrap();
    if let Ok(mut client) = client_with(&handle, Some(&mallory)).await {
        let status = bounded("poll", client.get_task_unary(task_request("NODE_alice")))
            .await
            .unwrap_err();
        assert_ne!(status.code(), Code::Ok);
    }
}
