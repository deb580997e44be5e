//! What every networked sub-command needs: a logger honouring `RUST_LOG`,
//! an actix `System` to run in, and Ctrl-C.

use std::future::Future;

/// Default log filter of `researcher` and `node`: the binary's own messages
/// and the library's at info, other crates at warn.
pub(crate) const DEFAULT_LOG_FILTER: &str = "warn,fedroute=info";

/// A logger builder reading `RUST_LOG`, with `default_filter` when it is unset.
pub(crate) fn log_builder(default_filter: &str) -> env_logger::Builder {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    builder.format_timestamp_millis();
    builder
}

/// Installs the process logger (a second call is a no-op).
pub(crate) fn init_logging(default_filter: &str) {
    let _ = log_builder(default_filter).try_init();
}

/// Runs `fut` to completion inside a fresh actix `System` (tokio underneath).
pub(crate) fn block_on<F>(fut: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>>,
{
    actix::System::new().block_on(fut)
}

/// Resolves when the user presses Ctrl-C (never, if the signal handler cannot
/// be installed; that is logged).
pub(crate) async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        log::warn!("cannot listen for Ctrl-C: {e}");
        std::future::pending::<()>().await;
    }
}
