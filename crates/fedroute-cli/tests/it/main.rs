//! The integration tests of `fedroute-cli`, one module per behaviour (one test
//! binary per crate, so that the workspace links few test executables).

use fedroute_testkit::node as node_support;
use fedroute_testkit::process as cli_support;
use fedroute_testkit::researcher as researcher_support;

mod cli_cert;
mod cli_crash_soak;
mod cli_demo;
mod cli_errors;
mod cli_researcher_node;
mod cli_trust;
mod durable_kill;

mod hostile_budget;
mod hostile_decode;
mod hostile_flood;
mod hostile_isolation;
mod hostile_logs;
mod hostile_support;
mod node_reconnect_outage;
mod wire_inspect;
