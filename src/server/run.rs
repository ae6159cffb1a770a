//! Running a generation job on a blocking thread, tied to the request's lifetime:
//! the job holds a queue slot until it returns, and dropping the request's
//! [`CancelGuard`] (client gone) cancels it at the next token.

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::queue::Slot;
use crate::engine::CancelToken;

/// Cancels its token when dropped: owned by the response future or the SSE stream.
#[derive(Debug)]
pub struct CancelGuard(pub CancelToken);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `job` on tokio's blocking pool with `slot` held until it returns, and gives the
/// receiving end of the channel the job reports into.
///
/// If the job panics, the sender is dropped without a final message: receivers treat a
/// channel that closes early as an internal error.
pub fn spawn_job<M, F>(slot: Slot, cancel: CancelToken, job: F) -> UnboundedReceiver<M>
where
    M: Send + 'static,
    F: FnOnce(&CancelToken, &UnboundedSender<M>) + Send + 'static,
{
    let (tx, rx) = unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        job(&cancel, &tx);
    });
    rx
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh response id with the given prefix, e.g. `chatcmpl-…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}
