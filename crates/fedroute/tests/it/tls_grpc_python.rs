//! Interoperability of fedroute's TLS with grpc-python (what Fed-BioMed
//! runs), both ways:
//! - a grpc-python client that trusts a fedroute-generated researcher
//!   certificate (ECDSA, SAN = host) as its root, as Fed-BioMed nodes do,
//!   reaches a fedroute tonic server; grpc-python checks the host name
//!   against the SAN, so a certificate for another host is refused;
//! - a fedroute client fetches (trust on first use) and pins the RSA-2048
//!   certificate without SAN of a grpc-python server.
//!
//! Runs only where a Python with the `grpc` module is found (`FEDROUTE_PYTHON`
//! or `python3`); elsewhere each test says so and passes.

use crate::tls_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fedroute::tls::{
    connect_channel, fetch_server_certificate, generate_researcher_identity_for_hosts,
    load_researcher_identity, pinned_client_config, researcher_id_of, ChannelOptions,
};
use tls_support::{probe, within, TestServer};

/// A grpc-python client: calls Feedback with an empty message, prints OK or FAIL.
const CLIENT: &str = r#"
import sys, grpc
pem, target = sys.argv[1], sys.argv[2]
creds = grpc.ssl_channel_credentials(root_certificates=open(pem, 'rb').read())
with grpc.secure_channel(target, creds) as channel:
    call = channel.unary_unary('/researcher.ResearcherService/Feedback')
    try:
        call(b'', timeout=10)
        print('OK')
    except grpc.RpcError as e:
        print('FAIL', e.code(), e.details())
"#;

/// A grpc-python server answering Feedback; prints its port, then serves
/// until stdin closes.
const SERVER: &str = r#"
import sys, grpc
from concurrent import futures
cert, key = sys.argv[1], sys.argv[2]
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
handler = grpc.method_handlers_generic_handler('researcher.ResearcherService',
    {'Feedback': grpc.unary_unary_rpc_method_handler(lambda request, context: b'')})
server.add_generic_rpc_handlers((handler,))
creds = grpc.ssl_server_credentials([(open(key, 'rb').read(), open(cert, 'rb').read())])
port = server.add_secure_port('127.0.0.1:0', creds)
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"#;

/// A Python with grpc, or `None` (the test is then skipped).
fn python_with_grpc() -> Option<String> {
    let python = std::env::var("FEDROUTE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let ok = Command::new(&python)
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Some(python)
    } else {
        eprintln!("no Python with grpc ({python}); skipping (set FEDROUTE_PYTHON)");
        None
    }
}

/// Runs the grpc-python client against `target` trusting `pem`; its output.
/// (The client bounds its own RPC to 10 s; we bound the wait as well.)
async fn python_client(python: &str, pem: &Path, target: String) -> String {
    let mut command = Command::new(python);
    command.args(["-c", CLIENT]).arg(pem).arg(target);
    let output = within(
        "grpc-python client",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("client thread")
    .expect("run the grpc-python client");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn grpc_python_trusts_generated_researcher_certificates() {
    let Some(python) = python_with_grpc() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, bool); 4] = [
        (&["127.0.0.1"], "127.0.0.1", true),
        (&["localhost"], "localhost", true),
        (&["localhost", "127.0.0.1"], "127.0.0.1", true),
        (&["researcher.example"], "127.0.0.1", false),
    ];
    for (hosts, dialled, accepted) in cases {
        let id = generate_researcher_identity_for_hosts(None, hosts).unwrap();
        let pem = dir.path().join("researcher.pem");
        std::fs::write(&pem, &id.cert_pem).unwrap();
        let server = TestServer::start(&id, None).await;
        let out = python_client(&python, &pem, format!("{dialled}:{}", server.port())).await;
        assert_eq!(
            out.starts_with("OK"),
            accepted,
            "certificate for {hosts:?}, dialled {dialled}: {out}"
        );
        server.stop().await;
    }
}

/// Kills the grpc-python server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn fedroute_pins_a_grpc_python_server_with_a_fedbiomed_certificate() {
    let Some(python) = python_with_grpc() else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let (cert, key) = (
        fixtures.join("fedbiomed_researcher_cert.pem"),
        fixtures.join("fedbiomed_researcher_key.pem"),
    );
    let id = load_researcher_identity(&cert, &key).unwrap();
    let mut child = Command::new(&python)
        .args(["-c", SERVER])
        .arg(&cert)
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the grpc-python server");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = KillOnDrop(child);
    let port = within(
        "grpc-python server start",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        }),
    )
    .await
    .unwrap()
    .expect("read the port")
    .trim()
    .parse::<u16>()
    .expect("the server prints its port");

    let fetched = within(
        "fetch",
        fetch_server_certificate("127.0.0.1", port, Duration::from_secs(10), None),
    )
    .await
    .expect("trust on first use against grpc-python");
    assert_eq!(fetched, id.cert_der);
    assert_eq!(researcher_id_of(&fetched).unwrap(), id.researcher_id);
    let config = pinned_client_config(fetched, None).unwrap();
    let channel = within(
        "connect",
        connect_channel("127.0.0.1", port, config, &ChannelOptions::default()),
    )
    .await
    .expect("pinned channel to grpc-python");
    probe(channel)
        .await
        .expect("Feedback answered by grpc-python");
    drop(server);
}
