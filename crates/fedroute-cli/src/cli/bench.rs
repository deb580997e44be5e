//! `fedroute bench`: runs the benchmark workloads of the library's `bench`
//! module in process and prints its table (or JSON). A thin shell: the
//! workloads, the table and the soak test live in the `fedroute-bench` crate.

use std::time::Duration;

use clap::Args;
use fedroute::config::ReceiveLimits;
use fedroute::ErrorChain;

use super::args::seconds;

use fedroute_bench as api;

/// Arguments of `fedroute bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Short runs: every workload with fewer rounds and smaller sizes
    /// (under 30 s) [default: full runs, under 3 minutes].
    #[arg(long)]
    pub(crate) quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run the soak test instead for this many seconds: 10 nodes, random
    /// payload sizes, researcher restarts and connection cuts; fails unless
    /// nothing was lost or duplicated [default: no soak].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) soak: Option<Duration>,
    /// Run only these workloads (1 sequential ping, 2 in flight, 3 model
    /// transfer, 4 fan-out, 5 reconnect, 6 wire limits), e.g. --only 1,3
    /// [default: all].
    #[arg(long, value_name = "N,N", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(1..=6))]
    pub(crate) only: Vec<u8>,
    /// MiB of receive buffers the researcher and the node keep for reuse in
    /// the model transfers (workload 3); 0 measures without reuse (the
    /// default is the library's).
    #[arg(long, value_name = "MIB", default_value_t = ReceiveLimits::DEFAULT_BUFFER_BYTES >> 20)]
    pub(crate) receive_buffer_mib: usize,
}

/// Runs the benchmarks and prints the report (a failed soak is an error).
///
/// `api::run` must be called first thing and outside any runtime: it makes
/// its own actix `System`, and in the node processes it spawns (this binary
/// again, with the same arguments) it runs the node and exits.
pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    // The workloads restart researchers and cut links on purpose; the
    // warnings that causes are expected, so only errors show by default
    // (RUST_LOG=warn shows them).
    super::runtime::init_logging("error");
    let options = api::BenchOptions {
        quick: args.quick,
        soak: args.soak,
        only: args.only.clone(),
        receive_buffer_bytes: Some(args.receive_buffer_mib.saturating_mul(1 << 20)),
    };
    let report = api::run(&options).map_err(|e| ErrorChain(&e).to_string())?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}
