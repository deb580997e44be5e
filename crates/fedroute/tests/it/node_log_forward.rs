//! Node log records reach researchers (the real fedroute researcher) as
//! `FeedbackMessage.log`; records below the level and the transport's own
//! records do not. One test per binary: it installs the process logger.

use crate::node_support;

use fedroute::node::{log_forward, Status};
use fedroute::wire::{Feedback, FeedbackMessage};
use node_support::real::RealResearcher;
use node_support::*;

fn log_of(f: FeedbackMessage) -> (Option<String>, fedroute::wire::Log) {
    match f.feedback {
        Feedback::Log(log) => (f.researcher_id, log),
        other => panic!("expected a log, got {other:?}"),
    }
}

#[actix_rt::test]
async fn log_records_reach_researchers_as_feedback() {
    // It installs process-wide state (see `rerun_alone`).
    if fedroute_testkit::process::rerun_alone(
        "node_log_forward::log_records_reach_researchers_as_feedback",
    ) {
        return;
    }
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Warn).is_test(true);
    let forwarding = log_forward::install(builder, log::LevelFilter::Info).unwrap();

    let mut a = RealResearcher::start(0, None).await;
    let mut b = RealResearcher::start(0, None).await;
    let (controller, _seen) = start_node(
        "NODE_log",
        vec![a.endpoint(), b.endpoint()],
        fast_config(),
        false,
    );
    forwarding.attach(controller.clone().recipient());
    a.connected("NODE_log").await;
    b.connected("NODE_log").await;
    wait_until("both researchers identified", || {
        let c = controller.clone();
        async move {
            c.send(Status)
                .await
                .unwrap()
                .iter()
                .all(|s| s.researcher_id.is_some())
        }
    })
    .await;

    // Broadcast record.
    log::warn!(target: "my_node::training", "disk almost full: {}%", 93);
    // A record for researcher b only.
    let b_id = b.id();
    log::info!(target: "my_node", researcher_id = b_id.as_str(); "hello b");
    // Below the forwarding level, and the transport's own records: local only.
    log::debug!(target: "my_node", "not forwarded");
    log::error!(target: "fedroute::node::link", "transport record, not forwarded");

    for r in [&mut a, &mut b] {
        let (_, entry) = log_of(r.feedback().await);
        assert_eq!(entry.node_id, "NODE_log");
        assert_eq!(entry.level, "WARNING");
        assert_eq!(entry.text(), "disk almost full: 93%");
        let json: serde_json::Value = serde_json::from_str(&entry.msg).unwrap();
        assert_eq!(
            json["name"], "my_node::training",
            "Fed-BioMed's JSON log form: {json}"
        );
        assert_eq!(json["node_id"], "NODE_log");
    }
    let (to, entry) = log_of(b.feedback().await);
    assert_eq!(entry.text(), "hello b");
    assert_eq!(entry.level, "INFO");
    assert_eq!(to.as_deref(), Some(b_id.as_str()));

    // Nothing else arrived: a marker record is the next feedback on both.
    log::warn!(target: "my_node", "marker");
    for r in [&mut a, &mut b] {
        let (_, entry) = log_of(r.feedback().await);
        assert_eq!(entry.text(), "marker");
    }
    assert_eq!(forwarding.dropped(), 0);
    forwarding.detach();
    a.shutdown().await;
    b.shutdown().await;
}
