//! Shared fixtures for fedroute's tests and benches (not published).
//!
//! Every fixture talks real TLS over 127.0.0.1 on ports picked at run time,
//! every await is bounded, and every thread or task started here stops when
//! its owner is dropped.
//!
//! - [`alloc`]: a counting allocator with per-thread counters.
//! - [`ca`]: a small certificate authority for mutual-TLS and CA-bundle tests.
//! - [`node`]: a small researcher for node tests, answering handlers, waits.
//! - [`researcher`]: real node controllers and raw clients for researcher tests.
//! - [`tls`]: TLS test servers and certificate helpers.
//! - [`process`]: the `fedroute` binary, free ports, bounded child processes.
//! - [`faults`]: a cutting/stalling TCP proxy and a scripted hostile researcher.
//! - [`connect_proxy`]: an HTTP `CONNECT` proxy (auth, refusals, cuts).
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod alloc;
pub mod ca;
pub mod connect_proxy;
pub mod faults;
pub mod node;
pub mod process;
pub mod researcher;
pub mod tls;

use std::future::Future;
use std::time::Duration;

/// Awaits `fut` at most `bound`; a timeout fails the test, naming `what`.
/// Every bounded await of the kit (each module with its own bound) is this.
pub async fn within_for<F: Future>(bound: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(bound, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {bound:?}: {what}"),
    }
}
