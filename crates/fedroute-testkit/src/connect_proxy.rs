//! [`ConnectProxy`]: an in-process HTTP `CONNECT` proxy for the proxy
//! tests. It accepts on 127.0.0.1, reads each `CONNECT` request with a
//! bound (8 KiB, 5 s), optionally checks Basic credentials, and either
//! answers `200` and splices bytes both ways, or answers a configured
//! refusal (or hangs up in the middle of its answer). It counts requests
//! and tunnels, can cut every open tunnel once a number of bytes went
//! through in one direction, and stops (closing every connection) when
//! dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

pub use crate::faults::Dir;

/// Most bytes of a request head the proxy reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Longest wait for a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How the proxy answers a `CONNECT` (with valid credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `200 Connection established`, then splice.
    Tunnel,
    /// This status and reason, then close.
    Refuse(u16, String),
    /// The first bytes of a `200` answer, then close (mid-handshake).
    HangUp,
}

#[derive(Default)]
struct State {
    /// Required Basic credentials (user, password), if any.
    credentials: Mutex<Option<(String, String)>>,
    behaviour: Mutex<Option<Behaviour>>,
    /// Targets of the `CONNECT` requests received, in order.
    requests: Mutex<Vec<String>>,
    /// Targets of the tunnels opened (answered 200).
    tunnels: Mutex<Vec<String>>,
    /// Requests answered 407 because of missing or wrong credentials.
    auth_refusals: AtomicU64,
    /// Bytes spliced up (client to target) and down, all tunnels together.
    up: AtomicU64,
    down: AtomicU64,
    /// Cut all tunnels once `up` (or `down`) reaches this; 0: disarmed.
    cut_at_up: AtomicU64,
    cut_at_down: AtomicU64,
    cuts: AtomicU64,
    /// Something happened (a request, a cut).
    news: Notify,
    cut_tx: Mutex<Option<watch::Sender<u64>>>,
}

/// An HTTP `CONNECT` proxy on 127.0.0.1 (see the module docs).
pub struct ConnectProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    /// Starts a proxy without authentication that opens every tunnel.
    pub async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let state = Arc::new(State::default());
        *state.cut_tx.lock().unwrap() = Some(cut_tx);
        let s = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, _)) = accepted else { continue };
                        conns.spawn(serve(inbound, Arc::clone(&s), cut_rx.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        ConnectProxy { addr, state, task }
    }

    /// Requires these Basic credentials (407 otherwise).
    pub fn require_auth(&self, user: &str, password: &str) {
        *self.state.credentials.lock().unwrap() = Some((user.into(), password.into()));
    }

    /// How to answer from now on.
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap() = Some(b);
    }

    /// `http://127.0.0.1:PORT`, with `user:password@` when given
    /// (percent-encode them yourself).
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The targets of the `CONNECT` requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The targets of the tunnels opened so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.state.tunnels.lock().unwrap().clone()
    }

    /// Requests refused 407 for their credentials.
    pub fn auth_refusals(&self) -> u64 {
        self.state.auth_refusals.load(Ordering::SeqCst)
    }

    /// Cuts every open tunnel once `bytes` more went through in `dir`
    /// (once).
    pub fn cut_after(&self, dir: Dir, bytes: u64) {
        let (counter, at) = match dir {
            Dir::Up => (&self.state.up, &self.state.cut_at_up),
            Dir::Down => (&self.state.down, &self.state.cut_at_down),
        };
        at.store(
            counter.load(Ordering::SeqCst) + bytes.max(1),
            Ordering::SeqCst,
        );
    }

    /// Cuts done so far.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Bytes spliced in `dir` so far.
    pub fn bytes(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Up => self.state.up.load(Ordering::SeqCst),
            Dir::Down => self.state.down.load(Ordering::SeqCst),
        }
    }

    /// Waits, at most `within`, until `n` requests were received.
    pub async fn wait_requests(&self, n: usize, within: Duration) {
        crate::within_for(within, &format!("{n} CONNECT requests"), async {
            loop {
                let news = self.state.news.notified();
                if self.state.requests.lock().unwrap().len() >= n {
                    return;
                }
                news.await;
            }
        })
        .await
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet: every connection closes.
        self.task.abort();
    }
}

fn cut_all(state: &State) {
    state.cuts.fetch_add(1, Ordering::SeqCst);
    if let Some(tx) = state.cut_tx.lock().unwrap().as_ref() {
        tx.send_modify(|n| *n += 1);
    }
    state.news.notify_waiters();
}

/// The request head: (target, Proxy-Authorization value), or None when
/// it is not a usable CONNECT within the bounds.
async fn read_request(inbound: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        loop {
            let mut chunk = [0u8; 512];
            // The client sends nothing after its head before our answer,
            // so reading in chunks does not eat tunnel bytes.
            let room = (MAX_REQUEST_HEAD - buf.len()).min(chunk.len());
            if room == 0 {
                return None;
            }
            let n = inbound.read(&mut chunk[..room]).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    if req.method != Some("CONNECT") {
                        return None;
                    }
                    let target = req.path?.to_string();
                    let auth = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned());
                    return Some((target, auth));
                }
                Ok(httparse::Status::Partial) => continue,
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read).await.ok()?
}

fn authorized(expected: &Option<(String, String)>, header: Option<&str>) -> bool {
    let Some((user, password)) = expected else {
        return true;
    };
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    header
        .and_then(|h| h.strip_prefix("Basic "))
        .is_some_and(|token| token.trim() == want)
}

async fn serve(mut inbound: TcpStream, state: Arc<State>, mut cut: watch::Receiver<u64>) {
    let Some((target, auth)) = read_request(&mut inbound).await else {
        let _ = inbound
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    state.requests.lock().unwrap().push(target.clone());
    state.news.notify_waiters();
    let expected = state.credentials.lock().unwrap().clone();
    if !authorized(&expected, auth.as_deref()) {
        state.auth_refusals.fetch_add(1, Ordering::SeqCst);
        let _ = inbound
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"fedroute test\"\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return;
    }
    let behaviour = state
        .behaviour
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(Behaviour::Tunnel);
    match behaviour {
        Behaviour::Tunnel => {}
        Behaviour::Refuse(status, reason) => {
            let answer = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = inbound.write_all(answer.as_bytes()).await;
            return;
        }
        Behaviour::HangUp => {
            let _ = inbound.write_all(b"HTTP/1.1 200 Conn").await;
            return;
        }
    }
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&target)).await
    else {
        let _ = inbound
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if inbound
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    state.tunnels.lock().unwrap().push(target);
    state.news.notify_waiters();
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let generation = *cut.borrow_and_update();
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let mut up_buf = vec![0u8; 64 * 1024];
    let mut down_buf = vec![0u8; 64 * 1024];
    let (mut up_open, mut down_open) = (true, true);
    while up_open || down_open {
        tokio::select! {
            _ = cut.changed() => {
                if *cut.borrow() != generation {
                    break;
                }
            }
            n = in_r.read(&mut up_buf), if up_open => match n {
                Ok(0) | Err(_) => { up_open = false; let _ = out_w.shutdown().await; }
                Ok(n) => {
                    if out_w.write_all(&up_buf[..n]).await.is_err() { break; }
                    let total = state.up.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    let at = state.cut_at_up.load(Ordering::SeqCst);
                    if at != 0 && total >= at {
                        state.cut_at_up.store(0, Ordering::SeqCst);
                        cut_all(&state);
                        break;
                    }
                }
            },
            n = out_r.read(&mut down_buf), if down_open => match n {
                Ok(0) | Err(_) => { down_open = false; let _ = in_w.shutdown().await; }
                Ok(n) => {
                    if in_w.write_all(&down_buf[..n]).await.is_err() { break; }
                    let total = state.down.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    let at = state.cut_at_down.load(Ordering::SeqCst);
                    if at != 0 && total >= at {
                        state.cut_at_down.store(0, Ordering::SeqCst);
                        cut_all(&state);
                        break;
                    }
                }
            },
        }
    }
    // Dropping both halves closes the tunnel.
}
