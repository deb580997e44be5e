//! `fedroute bench`: runs the benchmark workloads of the library's `bench`
//! module in process and prints its table (or JSON), or the crash soak
//! (`--crash-soak`, processes killed at random). A thin shell: the
//! workloads, the table and the soaks live in the `fedroute-bench` crate.

use std::time::Duration;

use clap::Args;
use fedroute::config::ReceiveLimits;
use fedroute::ErrorChain;

use super::args::{model_size, seconds, secs, Seconds, Size};

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
    /// Run the crash soak instead for this many seconds: a researcher and 3
    /// nodes as processes with their own state directories, each killed
    /// (SIGKILL) at random moments and restarted on the same state, then a
    /// drain; prints `crash-soak: S s, K kills: sent N / delivered D /
    /// duplicates X / lost Y` and fails unless nothing was lost or
    /// duplicated and a process was killed [default: no crash soak].
    #[arg(long, value_name = "SECONDS", value_parser = seconds, conflicts_with_all = ["soak", "only"])]
    pub(crate) crash_soak: Option<Duration>,
    /// With --crash-soak: the largest payload of a request (most are
    /// small, some above 1 MiB).
    #[arg(long, value_name = "SIZE", value_parser = model_size, requires = "crash_soak",
          default_value_t = Size(api::crash_soak::CrashSoakOptions::DEFAULT_MAX_PAYLOAD))]
    pub(crate) crash_soak_max_payload: Size,
    /// With --crash-soak: the timeout of each request, in seconds (the
    /// drain waits at most this long plus 15 s).
    #[arg(long, value_name = "SECONDS", value_parser = secs, requires = "crash_soak",
          default_value_t = Seconds(api::crash_soak::CrashSoakOptions::DEFAULT_REQUEST_TIMEOUT))]
    pub(crate) crash_soak_timeout: Seconds,
    /// With --crash-soak: count as duplicates the second deliveries the
    /// guarantee allows too (the researcher killed within 100 ms after a
    /// Reply event, before its store forgot the request) [default: they
    /// are counted apart, in a detail line].
    #[arg(long, requires = "crash_soak")]
    pub(crate) crash_soak_strict: bool,
    /// Run only these workloads (1 sequential ping, 2 in flight, 3 model
    /// transfer, 4 fan-out, 5 reconnect, 6 wire limits; 1 and 3 include
    /// their durable variants, both state directories on), e.g. --only 1,3
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
    if let Some(duration) = args.crash_soak {
        return crash_soak(args, duration);
    }
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

/// `--crash-soak`: runs it, prints its detail lines and its summary line
/// (or the JSON report); an error unless it passed.
fn crash_soak(args: &BenchArgs, duration: Duration) -> Result<(), String> {
    let mut options = api::crash_soak::CrashSoakOptions::new(duration);
    options.max_payload = args.crash_soak_max_payload.0;
    options.request_timeout = args.crash_soak_timeout.0;
    options.strict = args.crash_soak_strict;
    let report = api::run_crash_soak(&options).map_err(|e| ErrorChain(&e).to_string())?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.to_text());
    }
    if report.passed() {
        Ok(())
    } else {
        Err(format!("the crash soak failed: {}", report.line()))
    }
}
