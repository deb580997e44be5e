//! The `CONNECT` exchange as plain functions over bytes (no socket, no
//! timer): [`connect_request`] writes the request, [`parse_answer`] reads
//! the proxy's answer as it arrives, within bounds.
//!
//! The answer is parsed with `httparse`. Its head (status line and
//! headers) may take at most [`MAX_ANSWER_HEAD_BYTES`] and
//! [`MAX_ANSWER_HEADERS`]; anything beyond is an error, never a larger
//! buffer. A 2xx answer has no body (RFC 9110, 9.3.6): what follows it
//! belongs to the tunnel, and since the TLS client (the node) speaks first,
//! nothing may follow it before the node's first TLS record
//! ([`Answer::extra`] says how much did).

use base64::Engine;

use super::url::Credentials;
use crate::wire::shortened;

/// Most bytes of a proxy's answer head (status line and headers) read
/// before giving up (8 KiB).
pub const MAX_ANSWER_HEAD_BYTES: usize = 8 * 1024;
/// Most headers in a proxy's answer (64).
pub const MAX_ANSWER_HEADERS: usize = 64;
/// Characters of the reason phrase or of a header quoted in errors.
const QUOTE_CHARS: usize = 100;

/// The `CONNECT` request for `target` (`host:port`, IPv6 in brackets),
/// with basic authentication when `credentials` are given.
pub(super) fn connect_request(target: &str, credentials: Option<&Credentials>) -> Vec<u8> {
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: fedroute/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(c) = credentials {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Whether `target` can go into a request line as it is: printable ASCII,
/// no space (a host name or IP address and a port always is).
pub(super) fn is_request_safe(target: &str) -> bool {
    !target.is_empty() && target.bytes().all(|b| b.is_ascii_graphic())
}

/// A complete answer head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    /// The status code.
    pub(super) status: u16,
    /// The reason phrase, shortened.
    pub(super) reason: String,
    /// The `Proxy-Authenticate` challenge, shortened, if any.
    pub(super) authenticate: Option<String>,
    /// Bytes received after the head.
    pub(super) extra: usize,
}

impl Answer {
    /// A 2xx: the tunnel is open.
    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What [`parse_answer`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Parsed {
    /// The head is not complete yet: read more (at most
    /// [`MAX_ANSWER_HEAD_BYTES`] in all).
    Partial,
    /// The head is complete.
    Complete(Answer),
}

/// Why an answer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum AnswerError {
    /// Not HTTP/1.x (httparse's reason).
    #[error("it is not an HTTP/1.x answer ({0})")]
    NotHttp(&'static str),
    /// The head went past [`MAX_ANSWER_HEAD_BYTES`].
    #[error("its status line and headers take more than {MAX_ANSWER_HEAD_BYTES} bytes")]
    TooLarge,
    /// More than [`MAX_ANSWER_HEADERS`] headers.
    #[error("it has more than {MAX_ANSWER_HEADERS} headers")]
    TooManyHeaders,
}

/// Parses the answer received so far (`received` holds everything read,
/// from its first byte).
pub(super) fn parse_answer(received: &[u8]) -> Result<Parsed, AnswerError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(received) {
        Ok(httparse::Status::Partial) if received.len() >= MAX_ANSWER_HEAD_BYTES => {
            Err(AnswerError::TooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(head_len)) if head_len > MAX_ANSWER_HEAD_BYTES => {
            // Only when the caller read past the bound in one go.
            Err(AnswerError::TooLarge)
        }
        Ok(httparse::Status::Complete(head_len)) => {
            let status = response.code.unwrap_or_default();
            let reason = shortened(response.reason.unwrap_or_default(), QUOTE_CHARS).into_owned();
            let authenticate = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
                .map(|h| shortened(&String::from_utf8_lossy(h.value), QUOTE_CHARS).into_owned());
            Ok(Parsed::Complete(Answer {
                status,
                reason,
                authenticate,
                extra: received.len() - head_len.min(received.len()),
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(AnswerError::TooManyHeaders),
        Err(e) => Err(AnswerError::NotHttp(http_error(e))),
    }
}

/// httparse's error as a short phrase.
fn http_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1",
        _ => "invalid HTTP",
    }
}

/// What a refusal with `status` means for the operator, as a suffix of
/// the error sentence ("" when the status says it all).
pub(super) fn refusal_hint(status: u16, user: Option<&str>, authenticate: Option<&str>) -> String {
    match (status, user) {
        (407, Some(user)) => format!(
            " (the proxy refused the credentials of user {})",
            shortened(user, QUOTE_CHARS)
        ),
        (407, None) => format!(
            " (the proxy wants credentials{}: give them in the proxy URL, http://USER:PASSWORD@HOST:PORT)",
            authenticate
                .map(|a| format!(", Proxy-Authenticate: {a}"))
                .unwrap_or_default()
        ),
        (403, _) => " (the proxy's rules forbid this destination or port)".to_string(),
        (500 | 502..=504, _) => " (the proxy could not reach the researcher)".to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Answer {
        match parse_answer(bytes) {
            Ok(Parsed::Complete(a)) => a,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn the_request_names_the_target_and_carries_basic_auth() {
        let plain = String::from_utf8(connect_request("researcher.org:50051", None)).unwrap();
        assert!(plain.starts_with(
            "CONNECT researcher.org:50051 HTTP/1.1\r\nHost: researcher.org:50051\r\n"
        ));
        assert!(plain.ends_with("\r\n\r\n") && !plain.contains("Proxy-Authorization"));
        let creds = Credentials {
            user: "Aladdin".into(),
            password: "open sesame".into(),
        };
        let authed = String::from_utf8(connect_request("[::1]:1", Some(&creds))).unwrap();
        // RFC 7617's example.
        assert!(authed.contains("\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
        assert!(authed.starts_with("CONNECT [::1]:1 HTTP/1.1\r\n"));
        // The request parses back as HTTP.
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(authed.as_bytes()).unwrap().is_complete());
        assert_eq!((req.method, req.path), (Some("CONNECT"), Some("[::1]:1")));
    }

    #[test]
    fn only_printable_targets_go_into_a_request_line() {
        assert!(is_request_safe("a.org:1") && is_request_safe("[::1]:2"));
        for bad in ["", "a b:1", "a\r\nX: y:1", "é:1"] {
            assert!(!is_request_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_200_opens_the_tunnel_and_a_refusal_keeps_its_status_and_reason() {
        let ok = complete(b"HTTP/1.1 200 Connection established\r\n\r\n");
        assert!(ok.is_success() && ok.extra == 0, "{ok:?}");
        let ok10 = complete(b"HTTP/1.0 200 OK\r\nProxy-agent: x\r\n\r\n");
        assert!(ok10.is_success());
        let refused = complete(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"hospital\"\r\nContent-Length: 5\r\n\r\nnope!",
        );
        assert_eq!(refused.status, 407);
        assert_eq!(refused.reason, "Proxy Authentication Required");
        assert_eq!(
            refused.authenticate.as_deref(),
            Some("Basic realm=\"hospital\"")
        );
        assert_eq!(refused.extra, 5, "the body is not part of the head");
        // Bare LF line endings are HTTP too.
        assert_eq!(complete(b"HTTP/1.1 502 Bad Gateway\n\n").status, 502);
        // Data right after a 200 is counted (the caller refuses it).
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03").extra, 2);
    }

    #[test]
    fn a_head_arriving_in_pieces_is_partial_until_complete() {
        let answer = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 proxy\r\n\r\n";
        for cut in 0..answer.len() {
            assert_eq!(
                parse_answer(&answer[..cut]),
                Ok(Parsed::Partial),
                "cut at {cut}"
            );
        }
        assert!(complete(answer).is_success());
    }

    #[test]
    fn hostile_answers_are_errors_within_the_bounds() {
        // Headers that never end: refused once the bound is reached.
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() < MAX_ANSWER_HEAD_BYTES {
            endless.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let below = &endless[..MAX_ANSWER_HEAD_BYTES - 1];
        assert!(matches!(
            parse_answer(below),
            Ok(Parsed::Partial) | Err(AnswerError::TooManyHeaders)
        ));
        assert!(parse_answer(&endless[..MAX_ANSWER_HEAD_BYTES]).is_err());
        // A status line that never ends.
        let long_line = [b'a'; MAX_ANSWER_HEAD_BYTES];
        assert!(parse_answer(&long_line).is_err());
        let mut long_reason = b"HTTP/1.1 200 ".to_vec();
        long_reason.resize(MAX_ANSWER_HEAD_BYTES, b'x');
        assert_eq!(parse_answer(&long_reason), Err(AnswerError::TooLarge));
        // Too many (short) headers.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_ANSWER_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_answer(&many), Err(AnswerError::TooManyHeaders));
        // Not HTTP at all: a TLS record, SSH, binary junk.
        for junk in [
            &b"\x16\x03\x01\x00\x05hello"[..],
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"\x00\xff\xfe\r\n\r\n",
        ] {
            assert!(
                matches!(parse_answer(junk), Err(AnswerError::NotHttp(_))),
                "{junk:?}: {:?}",
                parse_answer(junk)
            );
        }
        // A huge reason phrase within the bound is quoted shortened.
        let mut long = b"HTTP/1.1 403 ".to_vec();
        long.extend(std::iter::repeat_n(b'r', 4000));
        long.extend_from_slice(b"\r\n\r\n");
        let a = complete(&long);
        assert!(a.reason.len() < 200, "{}", a.reason.len());
        // Non-UTF-8 header values do not panic.
        let odd = complete(b"HTTP/1.1 407 X\r\nProxy-Authenticate: \xff\xfe\r\n\r\n");
        assert!(odd.authenticate.is_some());
    }

    #[test]
    fn refusal_hints_say_what_to_do() {
        assert!(refusal_hint(407, None, Some("Basic realm=\"x\""))
            .contains("http://USER:PASSWORD@HOST:PORT"));
        assert!(refusal_hint(407, Some("alice"), None).contains("credentials of user alice"));
        assert!(refusal_hint(403, None, None).contains("forbid"));
        assert!(refusal_hint(502, None, None).contains("could not reach"));
        assert_eq!(refusal_hint(418, None, None), "");
    }
}
