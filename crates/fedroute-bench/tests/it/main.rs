//! The integration tests of `fedroute-bench`, one module per behaviour (one test
//! binary per crate, so that the workspace links few test executables).

use fedroute_testkit::node as node_support;
use fedroute_testkit::researcher as researcher_support;

mod node_throughput;
mod researcher_throughput;
mod transfer_buffers;
