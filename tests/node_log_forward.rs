//! Node log records reach researchers as `FeedbackMessage.log`; the
//! transport's own records do not. One test per binary: it installs the
//! process logger.

mod node_support;

use fedroute::node::log_forward;
use fedroute::proto::feedback_message::FeedbackType;
use node_support::*;

#[actix_rt::test]
async fn log_records_reach_researchers_as_feedback() {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Warn).is_test(true);
    let forwarding = log_forward::install(builder, log::LevelFilter::Info).unwrap();

    let mut a = MiniResearcher::start(0, None, true);
    let mut b = MiniResearcher::start(0, None, true);
    let (controller, _seen) = start_node(
        "NODE_log",
        vec![endpoint_of(&a), endpoint_of(&b)],
        fast_config(),
        false,
    );
    forwarding.attach(controller.clone().recipient());
    a.next_poll().await;
    b.next_poll().await;
    wait_until("both researchers identified", || {
        let c = controller.clone();
        async move {
            c.send(fedroute::node::Status)
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
    log::info!(target: "my_node", researcher_id = b.researcher_id.as_str(); "hello b");
    // Below the forwarding level, and the transport's own records: local only.
    log::debug!(target: "my_node", "not forwarded");
    log::error!(target: "fedroute::node::link", "transport record, not forwarded");

    for r in [&mut a, &mut b] {
        let f = within("broadcast feedback", r.feedback.recv())
            .await
            .unwrap();
        let Some(FeedbackType::Log(entry)) = f.feedback_type else {
            panic!("expected a log, got {f:?}")
        };
        assert_eq!(entry.node_id, "NODE_log");
        assert_eq!(entry.level, "WARNING");
        assert_eq!(entry.msg, "disk almost full: 93%");
        assert_eq!(f.protocol_version, "7");
    }
    let f = within("targeted feedback", b.feedback.recv())
        .await
        .unwrap();
    let Some(FeedbackType::Log(entry)) = f.feedback_type else {
        panic!("expected a log, got {f:?}")
    };
    assert_eq!(entry.msg, "hello b");
    assert_eq!(entry.level, "INFO");
    assert_eq!(f.researcher_id.as_deref(), Some(b.researcher_id.as_str()));

    // Nothing else arrives: a marker record is the next feedback on both.
    log::warn!(target: "my_node", "marker");
    for r in [&mut a, &mut b] {
        let f = within("marker", r.feedback.recv()).await.unwrap();
        let Some(FeedbackType::Log(entry)) = f.feedback_type else {
            panic!("expected a log, got {f:?}")
        };
        assert_eq!(entry.msg, "marker");
    }
    assert_eq!(forwarding.dropped(), 0);
}
