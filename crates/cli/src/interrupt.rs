//! Ctrl-C, handled one way by every command: the first cancels the work (which then cleans up
//! its containers and says how to resume); a second one exits at once without waiting for that.

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first Ctrl-C.
pub fn on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancel
}
