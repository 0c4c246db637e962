//! Waiting for the operator's stop: SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
//!
//! Every long-running command (`run`, `demo`, `desk`, `samples`) stops on the same signals, so
//! they share this one small module rather than reaching into each other for it.

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Blocks the calling thread until SIGINT or SIGTERM, for commands without an async runtime.
/// Returns at once if no runtime for the signal handlers can be made (nothing would wake it).
pub fn wait() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(rt) = rt {
        rt.block_on(signal());
    }
}
