//! The integration tests of `fedroute`, one module per behaviour (one test
//! binary per crate, so that the workspace links few test executables).

use fedroute_testkit::faults as faults_support;
use fedroute_testkit::node as node_support;
use fedroute_testkit::process as cli_support;
use fedroute_testkit::researcher as researcher_support;
use fedroute_testkit::tls as tls_support;

mod cli_examples;
mod config_readme;
mod faults_proxy;
mod faults_restart;
mod hostile_node;
mod hostile_researcher;
mod interop;
mod node_backpressure;
mod node_e2e;
mod node_handler;
mod node_log_forward;
mod node_proxy;
mod node_reconnect;
mod node_request_reply;
mod node_shutdown;
mod node_trust;
mod node_trust_store;
mod researcher_bad_input;
mod researcher_durable;
mod researcher_mtls;
mod researcher_pending;
mod researcher_request_reply;
mod researcher_shutdown;
mod researcher_status;
mod security_identity;
mod security_logs;
mod tls_connect;
mod tls_files;
mod tls_grpc_python;
mod tls_mutual;
mod tls_provider;
mod wire_chunks;
mod wire_copies;
mod wire_decode_budget;
mod wire_golden;
mod wire_malformed;
mod wire_messages;
mod wire_value_props;

/// Counts allocations per thread for the copy and decode-budget tests.
#[global_allocator]
static GLOBAL: fedroute_testkit::alloc::Counting = fedroute_testkit::alloc::Counting;
