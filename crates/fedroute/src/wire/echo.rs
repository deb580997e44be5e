//! Echoing what a peer sent, shortened.
//!
//! Errors, gRPC statuses and log lines often quote a peer's input (a node
//! id, a protocol version, a class name). A peer chooses those strings, so
//! a quote is cut to [`ECHO_CHARS`] characters, with the full length
//! appended: a 1 MB "node id" comes back as 64 characters and a count, not
//! as a megabyte of trailers or log.
//!
//! ```
//! use fedroute::wire::echo;
//!
//! assert_eq!(echo("NODE_1"), "NODE_1");
//! let long = "x".repeat(1_000_000);
//! assert_eq!(echo(&long), format!("{}...(1000000 bytes)", "x".repeat(64)));
//! ```

/// Characters of a peer's string kept when it is quoted.
pub(crate) const ECHO_CHARS: usize = 64;

/// `s` as it may be quoted: whole when short, else its first
/// `ECHO_CHARS` characters and its length in bytes.
pub fn echo(s: &str) -> String {
    shortened(s, ECHO_CHARS).into_owned()
}

/// `s` whole when it has at most `chars` characters, else its first `chars`
/// characters and its length in bytes.
pub fn shortened(s: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(chars) {
        None => s.into(),
        Some((cut, _)) => format!("{}...({} bytes)", &s[..cut], s.len()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_stay_whole_and_long_ones_keep_a_prefix_and_their_length() {
        let exact = "é".repeat(ECHO_CHARS);
        assert_eq!(echo(&exact), exact);
        let longer = "é".repeat(ECHO_CHARS + 1);
        assert_eq!(
            echo(&longer),
            format!("{}...({} bytes)", "é".repeat(ECHO_CHARS), longer.len())
        );
        assert_eq!(echo(""), "");
    }
}
