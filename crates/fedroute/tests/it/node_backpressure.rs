//! A stuck handler does not block sending; a message the researcher keeps
//! refusing does not block the messages behind it.

use crate::node_support;

use actix::prelude::*;
use fedroute::node::{Controller, SendReply, Status, TaskReceived};
use node_support::*;
use tokio::sync::{mpsc, oneshot};

/// A handler that stops processing its mailbox at the first task until released.
struct Gate {
    release: Option<oneshot::Receiver<()>>,
    seen: mpsc::UnboundedSender<TaskReceived>,
}
impl Actor for Gate {
    type Context = Context<Self>;
}
impl Handler<TaskReceived> for Gate {
    type Result = ();
    fn handle(&mut self, task: TaskReceived, ctx: &mut Context<Self>) {
        let _ = self.seen.send(task);
        if let Some(release) = self.release.take() {
            ctx.wait(
                async move {
                    let _ = release.await;
                }
                .into_actor(self),
            );
        }
    }
}

#[actix_rt::test]
async fn a_stuck_handler_does_not_block_sending_and_loses_nothing() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let id = researcher.researcher_id.clone();
    let (release_tx, release_rx) = oneshot::channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let gate = Gate {
        release: Some(release_rx),
        seen: seen_tx,
    }
    .start();
    let controller = Controller::builder("NODE_bp")
        .name("gate")
        .researchers(vec![endpoint_of(&researcher)])
        .config(fast_config())
        .build(gate.recipient())
        .expect("the controller starts")
        .start();
    researcher.next_poll().await;
    // Far more tasks than the handler's mailbox (16) and the stream credits (16).
    for i in 0..60 {
        researcher.send_task(&ping_request(&id, &format!("t{i}")));
    }
    let first = within("the first task", seen.recv()).await.unwrap();
    assert_eq!(first.message.request_id(), Some("t0"));

    // The handler is stuck; replies still go out.
    for i in 0..5 {
        let reply = ping_reply(&ping_request(&id, &format!("r{i}")), "NODE_bp");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            researcher.next_reply().await.request_id(),
            Some(format!("r{i}").as_str())
        );
    }
    assert!(seen.try_recv().is_err(), "the handler is stuck");

    // Released, it gets every task, in order.
    release_tx.send(()).unwrap();
    for i in 1..60 {
        let task = within("a task", seen.recv()).await.unwrap();
        assert_eq!(task.message.request_id(), Some(format!("t{i}").as_str()));
    }
}

#[actix_rt::test]
async fn a_refused_message_does_not_block_the_queue() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let id = researcher.researcher_id.clone();
    let (controller, _seen) = start_node(
        "NODE_p",
        vec![endpoint_of(&researcher)],
        fast_config(),
        false,
    );
    researcher.next_poll().await;
    let poison = blob(&id, "bad", "Poison", bytes::Bytes::from_static(b"x"));
    within("send", controller.send(SendReply(poison)))
        .await
        .unwrap()
        .unwrap();
    for i in 0..3 {
        let reply = ping_reply(&ping_request(&id, &format!("ok{i}")), "NODE_p");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            researcher.next_reply().await.request_id(),
            Some(format!("ok{i}").as_str())
        );
    }
    wait_until("the poison dropped", || {
        let c = controller.clone();
        async move {
            let s = c.send(Status).await.unwrap().remove(0);
            s.rejected == 1 && s.queue_depth == 0
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_full_queue_is_an_error_not_unbounded_memory() {
    let mut researcher = MiniResearcher::start(0, None, true);
    let id = researcher.researcher_id.clone();
    let mut config = fast_config();
    config.queues.capacity = 3;
    let (controller, _seen) = start_node("NODE_q", vec![endpoint_of(&researcher)], config, false);
    researcher.next_poll().await;
    researcher.stop();
    for i in 0..3 {
        let reply = ping_reply(&ping_request(&id, &format!("k{i}")), "NODE_q");
        within("send", controller.send(SendReply(reply)))
            .await
            .unwrap()
            .unwrap();
    }
    let reply = ping_reply(&ping_request(&id, "k3"), "NODE_q");
    let r = within("send", controller.send(SendReply(reply)))
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Err(fedroute::node::NodeError::QueueFull { capacity: 3, .. })
        ),
        "{r:?}"
    );
    let status = within("status", controller.send(Status))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(status.queue_depth, 3);
}
