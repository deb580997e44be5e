//! Nodes behind an HTTP proxy: a real researcher over real TLS, reached
//! through the testkit's in-process `CONNECT` proxy. Through a proxy with
//! authentication a request gets its reply; a proxy that refuses the
//! credentials (407), forbids (403), cannot reach the researcher (502), is
//! down, or hangs up in its answer is a link error naming it (never its
//! password) and the researcher; a refusing proxy is asked again at the
//! back-off's pace; a tunnel cut in the middle of a 16 MiB reply is
//! reopened through the proxy and the reply arrives once.

use crate::node_support;
use crate::researcher_support;

use std::time::{Duration, Instant};

use actix::prelude::*;
use fedroute::node::{Controller, ControllerConfig, ResearcherEndpoint, Shutdown, Status};
use fedroute::proxy::Proxy;
use fedroute::researcher::{PendingCount, Request, ResearcherEvent, ResearcherHandle};
use fedroute::tls::{self, TrustPolicy};
use fedroute::wire::{Envelope, Value};
use fedroute_testkit::connect_proxy::{Behaviour, ConnectProxy, Dir};
use researcher_support::{blob_reply, blob_request, bounded, pattern, pong, Events};
use tokio::sync::mpsc;

const NODE: &str = "NODE_proxied";
const MIB: usize = 1 << 20;
/// The password of the tests' proxy user: it must never show in an error.
const PASSWORD: &str = "s3cret:@/pw";
/// [`PASSWORD`] percent-encoded for a URL.
const PASSWORD_IN_URL: &str = "s3cret%3A%40%2Fpw";

/// Records every task and answers pings with a pong, other requests with
/// a blob of their `reply_bytes`.
struct App {
    seen: mpsc::UnboundedSender<String>,
}

impl Actor for App {
    type Context = Context<Self>;
}

impl Handler<fedroute::node::TaskReceived> for App {
    type Result = ResponseFuture<()>;
    fn handle(
        &mut self,
        task: fedroute::node::TaskReceived,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let m = &task.message;
        let _ = self
            .seen
            .send(m.request_id().unwrap_or_default().to_string());
        let reply = match m.class() {
            "PingRequest" => pong(m, NODE),
            _ => {
                let n = m.get("reply_bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
                blob_reply(m, NODE, pattern(n))
            }
        };
        let sent = task.reply.send(reply);
        Box::pin(async move {
            let _ = sent.await;
        })
    }
}

fn proxy_url(proxy: &ConnectProxy, user: Option<&str>, password: &str) -> Proxy {
    let userinfo = user.map(|u| format!("{u}:{password}"));
    proxy
        .url(userinfo.as_deref())
        .parse()
        .expect("the test proxy URL parses")
}

fn start_node(
    endpoint: ResearcherEndpoint,
    config: ControllerConfig,
) -> (Addr<Controller>, mpsc::UnboundedReceiver<String>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let app = App { seen: seen_tx }.start();
    let controller = Controller::builder(NODE)
        .researchers(vec![endpoint])
        .config(config)
        .start(app.recipient())
        .expect("the controller starts");
    (controller, seen)
}

/// The link's first error, once it has one.
async fn link_error(controller: &Addr<Controller>) -> String {
    node_support::within("a link error", async {
        loop {
            let links = controller.send(Status).await.unwrap();
            if let Some(e) = links[0].last_error.clone() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

async fn stop(controller: Addr<Controller>, handle: Option<&ResearcherHandle>) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        controller.send(Shutdown {
            deadline: Duration::from_secs(2),
        }),
    )
    .await;
    if let Some(h) = handle {
        let _ = tokio::time::timeout(Duration::from_secs(10), h.shutdown()).await;
    }
}

async fn ask(handle: &ResearcherHandle, message: Envelope, timeout: Duration) -> Envelope {
    bounded(
        "the reply",
        handle.addr.send(Request {
            node_id: NODE.into(),
            message,
            timeout,
        }),
    )
    .await
    .expect("researcher mailbox")
    .expect("the request gets its reply")
}

#[actix_rt::test]
async fn a_node_behind_an_authenticating_proxy_gets_its_tasks_and_replies_through_one_tunnel() {
    let (handle, mut events) = researcher_support::start(researcher_support::config()).await;
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("researcher.pem");
    std::fs::write(&pin, tls::certificate_pem(&handle.cert_der)).unwrap();
    let proxy = ConnectProxy::start().await;
    proxy.require_auth("alice", PASSWORD);

    let endpoint = ResearcherEndpoint {
        host: "127.0.0.1".into(),
        port: handle.local_addr.port(),
        trust: TrustPolicy::PinnedCertificate(pin),
        proxy: None,
    }
    .with_proxy(proxy_url(&proxy, Some("alice"), PASSWORD_IN_URL));
    let (controller, _seen) = start_node(endpoint, node_support::fast_config());
    events.connected(NODE).await;
    let ping = researcher_support::ping(&handle);
    let reply = ask(&handle, ping.clone(), researcher_support::T).await;
    assert_eq!(reply.request_id(), ping.request_id());
    assert_eq!(reply.class(), "PingReply");

    // A pinned certificate needs no fetch: one tunnel carried it all.
    let researcher = handle.local_addr.to_string();
    assert_eq!(proxy.tunnels(), vec![researcher.clone()]);
    assert_eq!(proxy.requests(), vec![researcher]);
    assert_eq!(proxy.auth_refusals(), 0);
    assert!(proxy.bytes(Dir::Down) > 0 && proxy.bytes(Dir::Up) > 0);
    stop(controller, Some(&handle)).await;
}

#[actix_rt::test]
async fn a_proxy_refusing_the_credentials_is_a_clear_link_error_and_is_asked_at_the_back_off_pace()
{
    let (handle, _events) = researcher_support::start(researcher_support::config()).await;
    let proxy = ConnectProxy::start().await;
    proxy.require_auth("alice", "the-right-one");
    let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", handle.local_addr.port())
        .with_proxy(proxy_url(&proxy, Some("alice"), PASSWORD_IN_URL));
    let mut config = node_support::fast_config();
    // Knocks ten times faster than the back-off's first delay: a link that
    // retried at the knocks' pace would show at once.
    config.reconnect.probe_interval = Duration::from_millis(10);
    config.reconnect.backoff_first = Duration::from_millis(200);
    config.reconnect.backoff_max = Duration::from_secs(1);
    let (controller, _seen) = start_node(endpoint, config);

    let error = link_error(&controller).await;
    let named = format!("the HTTP proxy http://{} refused to open a tunnel to {}: 407 Proxy Authentication Required", proxy.addr, handle.local_addr);
    assert!(error.contains(&named), "{error}");
    assert!(error.contains("credentials of user alice"), "{error}");
    assert!(
        !error.contains(PASSWORD) && !error.contains(PASSWORD_IN_URL),
        "{error}"
    );
    let status = within_status(&controller).await;
    assert!(!format!("{status:?}").contains(PASSWORD_IN_URL));

    // A measurement window, not a synchronisation: count what the link
    // asks the proxy in 3 s. The back-off (200 ms doubling to 1 s) allows
    // about 7 attempts of 2 requests (the knock's CONNECT and the dial's);
    // the knocks' pace would be about 300, no delay at all thousands.
    let window = Duration::from_secs(3);
    let before = proxy.requests().len();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let asked = proxy.requests().len() - before;
    eprintln!(
        "node_proxy: 407 proxy asked {asked} times in {:?}",
        started.elapsed()
    );
    assert!(asked >= 2, "the link stopped retrying: {asked}");
    assert!(
        asked <= 20,
        "the link hammers a refusing proxy: {asked} requests in {window:?}"
    );
    assert_eq!(proxy.tunnels().len(), 0);
    assert_eq!(proxy.auth_refusals() as usize, proxy.requests().len());
    stop(controller, Some(&handle)).await;
}

async fn within_status(controller: &Addr<Controller>) -> Vec<fedroute::node::LinkStatus> {
    node_support::within("status", controller.send(Status))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_proxy_that_is_down_is_a_clear_link_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = listener.local_addr().unwrap();
    drop(listener);
    let proxy: Proxy = format!("http://bob:{PASSWORD_IN_URL}@{down}")
        .parse()
        .unwrap();
    let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", 50_051).with_proxy(proxy);
    let (controller, _seen) = start_node(endpoint, node_support::fast_config());
    let error = link_error(&controller).await;
    let named =
        format!("could not connect to the HTTP proxy http://{down} (to reach 127.0.0.1:50051)");
    assert!(error.contains(&named), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert!(
        !error.contains(PASSWORD) && !error.contains(PASSWORD_IN_URL),
        "{error}"
    );
    stop(controller, None).await;
}

#[actix_rt::test]
async fn a_proxy_that_forbids_cannot_reach_or_hangs_up_is_a_clear_link_error() {
    let (handle, _events) = researcher_support::start(researcher_support::config()).await;
    let target = handle.local_addr;
    let cases = [
        (
            Behaviour::Refuse(403, "Forbidden".into()),
            format!("refused to open a tunnel to {target}: 403 Forbidden (the proxy's rules forbid"),
        ),
        (
            Behaviour::Refuse(502, "Bad Gateway".into()),
            format!("refused to open a tunnel to {target}: 502 Bad Gateway (the proxy could not reach the researcher)"),
        ),
        (
            Behaviour::HangUp,
            format!("closed the connection after 17 bytes, before answering CONNECT {target}"),
        ),
    ];
    for (behaviour, says) in cases {
        let proxy = ConnectProxy::start().await;
        proxy.set_behaviour(behaviour.clone());
        let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", target.port())
            .with_proxy(proxy_url(&proxy, None, ""));
        let (controller, _seen) = start_node(endpoint, node_support::fast_config());
        let error = link_error(&controller).await;
        let named = format!("the HTTP proxy http://{} ", proxy.addr);
        assert!(
            error.contains(&named) && error.contains(&says),
            "{behaviour:?}: {error}"
        );
        stop(controller, None).await;
    }
    // No credentials where the proxy wants some: the error says how to give them.
    let proxy = ConnectProxy::start().await;
    proxy.require_auth("alice", PASSWORD);
    let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", target.port())
        .with_proxy(proxy_url(&proxy, None, ""));
    let (controller, _seen) = start_node(endpoint, node_support::fast_config());
    let error = link_error(&controller).await;
    assert!(
        error.contains("407 Proxy Authentication Required (the proxy wants credentials, Proxy-Authenticate: Basic realm=\"fedroute test\": give them in the proxy URL"),
        "{error}"
    );
    stop(controller, Some(&handle)).await;
}

#[actix_rt::test]
async fn a_tunnel_cut_during_a_16_mib_reply_is_reopened_through_the_proxy_and_the_reply_arrives_once(
) {
    let (handle, mut events) = researcher_support::start(researcher_support::config()).await;
    let proxy = ConnectProxy::start().await;
    proxy.require_auth("alice", PASSWORD);
    let endpoint = ResearcherEndpoint::trust_on_first_use("127.0.0.1", handle.local_addr.port())
        .with_proxy(proxy_url(&proxy, Some("alice"), PASSWORD_IN_URL));
    let (controller, mut seen) = start_node(endpoint, node_support::fast_config());
    events.connected(NODE).await;
    let tunnels_before = proxy.tunnels().len();

    let mut request = blob_request(&handle, pattern(16));
    request.set("reply_bytes", Value::UInt(16 * MIB as u64));
    // Cut every tunnel once 4 MiB of the reply went up.
    proxy.cut_after(Dir::Up, 4 * MIB as u64);
    let reply = ask(&handle, request.clone(), Duration::from_secs(60)).await;
    assert_eq!(proxy.cuts(), 1, "the upload was never cut");
    assert_eq!(reply.request_id(), request.request_id());
    let blob = reply.get("blob").and_then(Value::as_bin).unwrap();
    assert!(*blob == pattern(16 * MIB), "the reply arrived corrupted");

    // The link came back through the proxy, to the researcher only.
    let tunnels = proxy.tunnels();
    assert!(tunnels.len() > tunnels_before, "{tunnels:?}");
    let researcher = handle.local_addr.to_string();
    assert!(tunnels.iter().all(|t| *t == researcher), "{tunnels:?}");

    // The task reached the handler once; a ping proves none came between.
    let first = bounded("the task", seen.recv()).await.unwrap();
    assert_eq!(Some(first.as_str()), request.request_id());
    let ping = researcher_support::ping(&handle);
    let pong = ask(&handle, ping.clone(), researcher_support::T).await;
    assert_eq!(pong.request_id(), ping.request_id());
    let next = bounded("the ping task", seen.recv()).await.unwrap();
    assert_eq!(
        Some(next.as_str()),
        ping.request_id(),
        "a task reached the handler twice"
    );
    assert_eq!(
        bounded("pending", handle.addr.send(PendingCount))
            .await
            .unwrap(),
        0
    );
    let extra = unmatched(&mut events);
    eprintln!(
        "node_proxy: 16 MiB reply cut at 4 MiB; {} tunnels; {extra} extra copies dropped by the researcher",
        tunnels.len()
    );
    stop(controller, Some(&handle)).await;
}

/// Replies that matched no request (copies sent again after the cut that
/// the researcher had kept already).
fn unmatched(events: &mut Events) -> usize {
    events
        .drain()
        .iter()
        .filter(|e| matches!(e, ResearcherEvent::UnmatchedReply(_)))
        .count()
}
