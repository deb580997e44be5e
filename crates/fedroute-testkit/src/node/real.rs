//! The real fedroute researcher (`fedroute::researcher`) for end-to-end tests.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use fedroute::node::ResearcherEndpoint;
use fedroute::researcher::{self, ResearcherConfig, ResearcherEvent, ResearcherHandle};
use fedroute::wire::{Envelope, FeedbackMessage};
use tokio::sync::mpsc;

use super::within;

struct EventSink(mpsc::UnboundedSender<ResearcherEvent>);

impl Actor for EventSink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Handler<ResearcherEvent> for EventSink {
    type Result = ();
    fn handle(&mut self, event: ResearcherEvent, _: &mut Context<Self>) {
        let _ = self.0.send(event);
    }
}

/// A running researcher and its events.
pub struct RealResearcher {
    /// The handle (actor address, port, id, certificate).
    pub handle: ResearcherHandle,
    /// Everything it reported, in order.
    pub events: mpsc::UnboundedReceiver<ResearcherEvent>,
}

impl RealResearcher {
    /// Starts a researcher on 127.0.0.1:`port` (0: any) with `researcher_id`
    /// (fresh when `None`) and a fresh self-signed certificate.
    pub async fn start(port: u16, researcher_id: Option<&str>) -> RealResearcher {
        let mut config = ResearcherConfig::default();
        config.listen.address = SocketAddr::from(([127, 0, 0, 1], port));
        config.listen.researcher_id = researcher_id.map(str::to_string);
        RealResearcher::start_with(config).await
    }

    /// Starts a researcher on 127.0.0.1:`port` (0: any) keeping its
    /// identity in `state_dir` (generated there on the first start).
    pub async fn start_in(port: u16, state_dir: &std::path::Path) -> RealResearcher {
        let mut config = ResearcherConfig::default();
        config.listen.address = SocketAddr::from(([127, 0, 0, 1], port));
        config.state_dir = Some(state_dir.to_path_buf());
        RealResearcher::start_with(config).await
    }

    /// Starts a researcher with `config`.
    pub async fn start_with(config: ResearcherConfig) -> RealResearcher {
        let (tx, events) = mpsc::unbounded_channel();
        let sink = EventSink(tx).start();
        let handle = within(
            "the researcher to start",
            researcher::start(config, Some(sink.recipient())),
        )
        .await
        .expect("researcher start");
        RealResearcher { handle, events }
    }

    /// Starts a researcher on 127.0.0.1:0 serving the given certificate and key files.
    pub async fn start_with_identity(
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    ) -> RealResearcher {
        let mut config = ResearcherConfig::default();
        config.listen.address = SocketAddr::from(([127, 0, 0, 1], 0));
        config.listen.identity = Some((cert, key));
        RealResearcher::start_with(config).await
    }

    /// Its endpoint, trusted on first use.
    pub fn endpoint(&self) -> ResearcherEndpoint {
        ResearcherEndpoint::trust_on_first_use("127.0.0.1", self.port())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.handle.local_addr.port()
    }

    /// Its id.
    pub fn id(&self) -> String {
        self.handle.researcher_id.clone()
    }

    /// Shuts it down (closes the node streams, stops the server).
    pub async fn shutdown(&self) {
        within("the researcher to shut down", self.handle.shutdown())
            .await
            .expect("researcher shutdown");
    }

    /// Sends `message` to `node_id` and waits for the reply.
    pub async fn request(&self, node_id: &str, message: Envelope) -> Envelope {
        within(
            "a researcher request",
            self.handle.addr.send(researcher::Request {
                node_id: node_id.to_string(),
                message,
                timeout: Duration::from_secs(10),
            }),
        )
        .await
        .expect("mailbox")
        .expect("request")
    }

    /// The next event matching `pick`, skipping others.
    pub async fn next_event<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(ResearcherEvent) -> Option<T>,
    ) -> T {
        within(what, async {
            loop {
                let event = self.events.recv().await.expect("event channel closed");
                if let Some(t) = pick(event) {
                    return t;
                }
            }
        })
        .await
    }

    /// Waits for `node_id` to poll (first poll on this researcher).
    pub async fn connected(&mut self, node_id: &str) {
        let node = node_id.to_string();
        self.next_event("the node to connect", |e| match e {
            ResearcherEvent::NodeConnected { node_id } if node_id == node => Some(()),
            _ => None,
        })
        .await
    }

    /// The next reply no request waited for.
    pub async fn unmatched_reply(&mut self) -> Envelope {
        self.next_event("an unmatched reply", |e| match e {
            ResearcherEvent::UnmatchedReply(envelope) => Some(envelope),
            _ => None,
        })
        .await
    }

    /// The next feedback.
    pub async fn feedback(&mut self) -> FeedbackMessage {
        self.next_event("feedback", |e| match e {
            ResearcherEvent::Feedback(f) => Some(f),
            _ => None,
        })
        .await
    }
}
