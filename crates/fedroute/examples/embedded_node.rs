//! A node service embedded in an actix program: a [`Controller`] (the
//! node's connection to its researchers) and a handler actor that answers
//! the tasks the controller delivers, doing the work off the actors'
//! threads.
//!
//! ```text
//! cargo run --example embedded_node                    # against a researcher started in this process
//! cargo run --example embedded_node -- 127.0.0.1:50051 # against a running researcher (e.g. `fedroute researcher`), until Ctrl-C
//! ```

use std::error::Error;
use std::time::Duration;

use actix::prelude::*;
use fedroute::node::{
    Controller, IsConnected, NodeError, ResearcherEndpoint, Shutdown, TaskReceived,
};
use fedroute::researcher::{self, Request, ResearcherConfig};
use fedroute::wire::{Envelope, ErrorMessage, PingReply, PingRequest, WireError};
use fedroute::ErrorChain;

const NODE_ID: &str = "NODE_embedded";
const BOUND: Duration = Duration::from_secs(10);

/// The node's service: answers each task through the `Replier` it
/// carries. The answer is computed on tokio's blocking pool, as CPU-bound
/// work (training) must be: run inline, it would hold up this actor's other
/// tasks, and on the controller's arbiter it would stall every link.
struct PingService;

impl Actor for PingService {
    type Context = Context<Self>;
}

impl Handler<TaskReceived> for PingService {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, task: TaskReceived, _: &mut Context<Self>) -> Self::Result {
        println!("node: {} from {}", task.message.class(), task.researcher_id);
        let TaskReceived { message, reply, .. } = task;
        Box::pin(async move {
            let answer = tokio::task::spawn_blocking(move || answer(&message)).await;
            match answer {
                Ok(Ok(envelope)) => {
                    if let Err(e) = reply.send(envelope).await {
                        log::error!("the reply was not queued: {}", ErrorChain(&e));
                    }
                }
                Ok(Err(e)) => log::error!("cannot build the reply: {e}"),
                Err(e) => log::error!("the work on the blocking pool failed: {e}"),
            }
        })
    }
}

/// The work itself (here a ping answer; in a real node, training).
fn answer(request: &Envelope) -> Result<Envelope, WireError> {
    match request.class() {
        "PingRequest" => Envelope::from_typed(&PingReply::answer(request, NODE_ID, "example")),
        other => Envelope::from_typed(&ErrorMessage::answer(
            request,
            NODE_ID,
            "example",
            format!("{other} is not handled by this example"),
            None,
        )),
    }
}

/// Starts the handler and the controller that delivers tasks to it.
fn start_node(endpoint: ResearcherEndpoint) -> Result<Addr<Controller>, NodeError> {
    Controller::builder(NODE_ID)
        .name("example")
        .researcher(endpoint)
        .start(PingService.start().recipient())
}

async fn against_local_researcher() -> Result<(), Box<dyn Error>> {
    let mut config = ResearcherConfig::default();
    config.listen.address = "127.0.0.1:0".parse()?;
    let researcher = researcher::start(config, None).await?;
    let port = researcher.local_addr.port();
    let controller = start_node(ResearcherEndpoint::trust_on_first_use("127.0.0.1", port))?;
    tokio::time::timeout(BOUND, async {
        while !controller.send(IsConnected).await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let ping = Envelope::from_typed(&PingRequest::new(&researcher.researcher_id))?;
    let reply = researcher
        .addr
        .send(Request {
            node_id: NODE_ID.into(),
            message: ping,
            timeout: BOUND,
        })
        .await??;
    println!(
        "researcher: {} from {}",
        reply.class(),
        reply.node_id().unwrap_or("?")
    );
    controller.send(Shutdown { deadline: BOUND }).await?;
    researcher.shutdown().await?;
    Ok(())
}

async fn against(addr: &str) -> Result<(), Box<dyn Error>> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let controller = start_node(ResearcherEndpoint::trust_on_first_use(host, port.parse()?))?;
    println!("node {NODE_ID} serving {addr}; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    controller.send(Shutdown { deadline: BOUND }).await?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    actix::System::new().block_on(async {
        match std::env::args().nth(1) {
            Some(addr) => against(&addr).await,
            None => against_local_researcher().await,
        }
    })
}
