//! A researcher embedded in an actix program: it serves nodes, hears about
//! them through an event handler, sends them requests and awaits the replies.
//!
//! ```text
//! cargo run --example embedded_researcher                    # with a node started in this process
//! cargo run --example embedded_researcher -- 127.0.0.1:50051 # listen there and wait (60 s) for a node,
//!                                                            # e.g. `fedroute node --researcher 127.0.0.1:50051 --id NODE_1 --dataset mnist:demo`
//! ```

use std::error::Error;
use std::time::Duration;

use actix::prelude::*;
use fedroute::node::{Controller, NodeError, ResearcherEndpoint, Shutdown, TaskReceived};
use fedroute::researcher::{self, Request, ResearcherConfig, ResearcherEvent};
use fedroute::wire::{
    Envelope, Feedback, PingReply, PingRequest, SearchReply, SearchRequest, Value,
};
use fedroute::ErrorChain;
use tokio::sync::mpsc;

const BOUND: Duration = Duration::from_secs(60);

/// The researcher's event handler: passes node arrivals on to `main`.
struct Events(mpsc::Sender<String>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<ResearcherEvent> for Events {
    type Result = ();
    fn handle(&mut self, event: ResearcherEvent, _: &mut Context<Self>) {
        match event {
            ResearcherEvent::NodeConnected { node_id } => {
                let _ = self.0.try_send(node_id);
            }
            ResearcherEvent::Feedback(f) => match f.feedback {
                Feedback::Log(log) => println!("log from {}: {}", log.node_id, log.text()),
                Feedback::Scalar(s) => println!("scalars from {}: {:?}", s.node_id, s.metric),
                other => println!("feedback: {other:?}"),
            },
            other => println!("researcher event: {other:?}"),
        }
    }
}

async fn run(listen: &str, local_node: bool) -> Result<(), Box<dyn Error>> {
    let (tx, mut arrivals) = mpsc::channel(16);
    let mut config = ResearcherConfig::default();
    config.listen.address = listen.parse()?;
    let researcher = researcher::start(config, Some(Events(tx).start().recipient())).await?;
    println!(
        "researcher {} on {}",
        researcher.researcher_id, researcher.local_addr
    );
    let node = local_node
        .then(|| start_node_in_process(researcher.local_addr.port()))
        .transpose()?;
    let node_id = tokio::time::timeout(BOUND, arrivals.recv())
        .await?
        .ok_or("the event handler stopped")?;

    let requests = [
        Envelope::from_typed(&PingRequest::new(&researcher.researcher_id))?,
        Envelope::from_typed(&SearchRequest::new(
            &researcher.researcher_id,
            vec!["demo".into()],
        ))?,
    ];
    for message in requests {
        let class = message.class().to_string();
        let reply = researcher
            .addr
            .send(Request {
                node_id: node_id.clone(),
                message,
                timeout: BOUND,
            })
            .await??;
        let count = reply.get("count").and_then(Value::as_u64);
        println!(
            "{class} -> {} from {node_id} (count: {count:?})",
            reply.class()
        );
    }
    if let Some(node) = node {
        node.send(Shutdown { deadline: BOUND }).await?;
    }
    researcher.shutdown().await?;
    Ok(())
}

/// A minimal node in the same process, answering pings and searches.
struct Node;

impl Actor for Node {
    type Context = Context<Self>;
}

impl Handler<TaskReceived> for Node {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) -> Self::Result {
        let req = &task.message;
        let reply = match req.class() {
            "PingRequest" => Envelope::from_typed(&PingReply::answer(req, "NODE_local", "local")),
            _ => Envelope::from_typed(&SearchReply::answer(req, "NODE_local", "local", vec![])),
        };
        let sent = reply.map(|reply| task.reply.send(reply));
        Box::pin(async move {
            match sent {
                Ok(sent) => {
                    if let Err(e) = sent.await {
                        log::error!("the reply was not queued: {}", ErrorChain(&e));
                    }
                }
                Err(e) => log::error!("cannot build the reply: {e}"),
            }
        })
    }
}

fn start_node_in_process(port: u16) -> Result<Addr<Controller>, NodeError> {
    Controller::builder("NODE_local")
        .name("local")
        .researcher(ResearcherEndpoint::trust_on_first_use("127.0.0.1", port))
        .start(Node.start().recipient())
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    actix::System::new().block_on(async {
        match std::env::args().nth(1) {
            Some(listen) => run(&listen, false).await,
            None => run("127.0.0.1:0", true).await,
        }
    })
}
