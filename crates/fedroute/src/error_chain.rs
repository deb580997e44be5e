//! [`ErrorChain`]: an error and its causes on one line.

use std::error::Error;
use std::fmt;

/// Displays an error followed by every error of its
/// [`source`](Error::source) chain, joined by `": "`.
///
/// fedroute's errors say what went wrong at their own level and return the
/// cause from `source()` without repeating it in their message, so that a
/// printed chain names each cause once. Print them through this (logs,
/// statuses sent to peers, the command line) to keep the causes. A cause
/// whose text the line already holds is left out: some errors of other
/// crates repeat their source in their own message.
///
/// ```
/// use std::path::PathBuf;
/// use fedroute::tls::TlsError;
/// use fedroute::ErrorChain;
///
/// let e = TlsError::ReadFile {
///     what: "certificate",
///     path: PathBuf::from("node.pem"),
///     source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
/// };
/// assert_eq!(e.to_string(), "could not read the certificate file node.pem");
/// assert_eq!(
///     ErrorChain(&e).to_string(),
///     "could not read the certificate file node.pem: no such file"
/// );
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(inner) = cause {
            let text = inner.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = inner.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_is_named_once() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(ErrorChain(&e).to_string(), "outer: middle: inner");
        // A cause that repeats what the line says already is left out.
        let e = Outer(Middle(std::io::Error::other("middle")));
        assert_eq!(ErrorChain(&e).to_string(), "outer: middle");
        let alone = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&alone).to_string(), "alone");
    }
}
