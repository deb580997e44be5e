//! The handler side of the node API: a handler replies through the
//! `Replier` each task carries (no controller address needed); a handler
//! that stops loses no task the links had not handed it: they hold back
//! until `SetHandler` gives a new one, which gets the next task; link up and
//! down changes reach an optional recipient.

use crate::node_support;
use crate::researcher_support;

use actix::prelude::*;
use fedroute::node::{
    Controller, LinkChange, PollMode, ResearcherEndpoint, SetHandler, Status, TaskReceived,
};
use fedroute::researcher::Request;
use fedroute::wire::Envelope;
use node_support::{fast_config, ping_reply, wait_until, within, PingHandler};
use tokio::sync::mpsc;

/// Answers one ping through the task's `Replier`, then stops.
struct OneShot {
    node_id: String,
}

impl Actor for OneShot {
    type Context = Context<Self>;
}

impl Handler<TaskReceived> for OneShot {
    type Result = ();
    fn handle(&mut self, task: TaskReceived, ctx: &mut Context<Self>) {
        let sent = task.reply.send(ping_reply(&task.message, &self.node_id));
        actix::spawn(async move {
            let _ = sent.await;
        });
        ctx.stop();
    }
}

/// Records link changes.
struct Changes(mpsc::UnboundedSender<LinkChange>);

impl Actor for Changes {
    type Context = Context<Self>;
}

impl Handler<LinkChange> for Changes {
    type Result = ();
    fn handle(&mut self, change: LinkChange, _: &mut Context<Self>) {
        let _ = self.0.send(change);
    }
}

async fn ask(
    handle: &fedroute::researcher::ResearcherHandle,
    node: &str,
    ping: &Envelope,
) -> Envelope {
    within(
        "request",
        handle.addr.send(Request {
            node_id: node.into(),
            message: ping.clone(),
            timeout: researcher_support::T,
        }),
    )
    .await
    .unwrap()
    .unwrap()
}

async fn a_stopped_handler_is_replaced_without_losing_a_task(mode: PollMode) {
    let (handle, mut events) = researcher_support::start(researcher_support::config()).await;
    let node = format!("NODE_handler_{mode:?}");
    let (changes_tx, mut changes) = mpsc::unbounded_channel();
    let controller = Controller::builder(node.as_str())
        .researcher(ResearcherEndpoint::trust_on_first_use(
            "127.0.0.1",
            handle.local_addr.port(),
        ))
        .on_link_change(Changes(changes_tx).start().recipient())
        .config({
            let mut config = fast_config();
            config.polling.mode = mode;
            config
        })
        .start(
            OneShot {
                node_id: node.clone(),
            }
            .start()
            .recipient(),
        )
        .expect("the controller starts");
    events.connected(&node).await;
    let up = within("link up", changes.recv()).await.unwrap();
    assert!(
        matches!(&up, LinkChange::Up { reconnected: false, researcher_id: Some(id), .. } if *id == handle.researcher_id),
        "{up:?}"
    );

    // The first handler answers once, through the Replier, and stops.
    let first = researcher_support::ping(&handle);
    assert_eq!(
        ask(&handle, &node, &first).await.request_id(),
        first.request_id()
    );

    // The second task is not handed to its closed mailbox ...
    let second = researcher_support::ping(&handle);
    let asked = {
        let (addr, node, second) = (handle.addr.clone(), node.clone(), second.clone());
        tokio::spawn(async move {
            addr.send(Request {
                node_id: node,
                message: second,
                timeout: researcher_support::T,
            })
            .await
        })
    };
    wait_until("the link waits for a handler", || {
        let c = controller.clone();
        async move { c.send(Status).await.unwrap()[0].waiting_for_handler }
    })
    .await;

    // ... it goes to the next handler.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let next = PingHandler {
        node_id: node.clone(),
        seen: seen_tx,
        answer: true,
    }
    .start();
    controller.do_send(SetHandler(next.recipient()));
    let reply = within("the second reply", asked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.request_id(), second.request_id());
    let handled = within("the second task", seen.recv()).await.unwrap();
    assert_eq!(handled.message.request_id(), second.request_id());
    assert!(!controller.send(Status).await.unwrap()[0].waiting_for_handler);

    // The researcher goes away: the link says it is down (once).
    handle.shutdown().await.unwrap();
    let down = within("link down", changes.recv()).await.unwrap();
    assert!(
        matches!(
            &down,
            LinkChange::Down {
                for_good: false,
                ..
            }
        ),
        "{down:?}"
    );
}

#[actix_rt::test]
async fn a_stopped_handler_is_replaced_without_losing_a_task_streaming() {
    a_stopped_handler_is_replaced_without_losing_a_task(PollMode::Streaming).await;
}

#[actix_rt::test]
async fn a_stopped_handler_is_replaced_without_losing_a_task_unary() {
    a_stopped_handler_is_replaced_without_losing_a_task(PollMode::Unary).await;
}

#[actix_rt::test]
async fn a_node_keeps_serving_when_nobody_keeps_its_controller_address() {
    let (handle, mut events) = researcher_support::start(researcher_support::config()).await;
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let handler = PingHandler {
        node_id: "NODE_unowned".into(),
        seen: seen_tx,
        answer: true,
    }
    .start();
    // The address is dropped at once: the handler replies through the
    // Replier of each task and needs none.
    drop(
        Controller::builder("NODE_unowned")
            .researcher(ResearcherEndpoint::trust_on_first_use(
                "127.0.0.1",
                handle.local_addr.port(),
            ))
            .config(fast_config())
            .start(handler.recipient())
            .expect("the controller starts"),
    );
    events.connected("NODE_unowned").await;
    let ping = researcher_support::ping(&handle);
    assert_eq!(
        ask(&handle, "NODE_unowned", &ping).await.request_id(),
        ping.request_id()
    );
}
