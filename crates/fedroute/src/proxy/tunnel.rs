//! One tunnel: a TCP connection to the proxy, `CONNECT`, the answer read
//! within its bounds ([`super::handshake`]), and the connection handed
//! back for TLS once the proxy said 2xx.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handshake::{self, AnswerError, Parsed, MAX_ANSWER_HEAD_BYTES};
use super::url::authority;
use super::{Proxy, ProxyError};

/// Bytes read from the proxy at a time while its answer arrives.
const READ_CHUNK: usize = 1024;

/// Opens a tunnel to `host:port` through `proxy`, bounded by
/// [`Proxy::handshake_timeout`]; the stream returned carries the
/// researcher's bytes (TLS goes on it).
pub(crate) async fn open(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let target = authority(host, port);
    let bound = proxy.handshake_timeout();
    match tokio::time::timeout(bound, open_unbounded(proxy, &target)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout {
            proxy: proxy.to_string(),
            target,
            after: bound,
        }),
    }
}

async fn open_unbounded(proxy: &Proxy, target: &str) -> Result<TcpStream, ProxyError> {
    let name = || proxy.to_string();
    if !handshake::is_request_safe(target) {
        return Err(ProxyError::Io {
            proxy: name(),
            target: crate::wire::echo(&target.escape_debug().to_string()),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the researcher's address cannot go into a CONNECT request",
            ),
        });
    }
    let mut tcp = TcpStream::connect((proxy.host(), proxy.port()))
        .await
        .map_err(|source| ProxyError::Unreachable {
            proxy: name(),
            target: target.to_string(),
            source,
        })?;
    let io_error = |source| ProxyError::Io {
        proxy: name(),
        target: target.to_string(),
        source,
    };
    let request = handshake::connect_request(target, proxy.credentials());
    tcp.write_all(&request).await.map_err(io_error)?;
    let mut received: Vec<u8> = Vec::with_capacity(256);
    let answer = loop {
        let mut chunk = [0u8; READ_CHUNK];
        let room = (MAX_ANSWER_HEAD_BYTES - received.len()).min(READ_CHUNK);
        let n = tcp.read(&mut chunk[..room]).await.map_err(io_error)?;
        if n == 0 {
            return Err(ProxyError::Closed {
                proxy: name(),
                target: target.to_string(),
                received: received.len(),
            });
        }
        received.extend_from_slice(&chunk[..n]);
        match handshake::parse_answer(&received) {
            Ok(Parsed::Partial) => continue,
            Ok(Parsed::Complete(answer)) => break answer,
            Err(e) => return Err(bad_answer(proxy, target, &e)),
        }
    };
    if !answer.is_success() {
        return Err(ProxyError::Refused {
            proxy: name(),
            target: target.to_string(),
            status: answer.status,
            hint: handshake::refusal_hint(
                answer.status,
                proxy.user(),
                answer.authenticate.as_deref(),
            ),
            reason: answer.reason,
        });
    }
    if answer.extra > 0 {
        return Err(ProxyError::BadAnswer {
            proxy: name(),
            target: target.to_string(),
            reason: format!(
                "{} bytes came after its {} answer, before the node's TLS handshake began",
                answer.extra, answer.status
            ),
        });
    }
    log::debug!("{target}: tunnel open through the HTTP proxy {proxy}");
    Ok(tcp)
}

fn bad_answer(proxy: &Proxy, target: &str, e: &AnswerError) -> ProxyError {
    ProxyError::BadAnswer {
        proxy: proxy.to_string(),
        target: target.to_string(),
        reason: e.to_string(),
    }
}
