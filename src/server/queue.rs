//! The fair FIFO admission queue: `max_concurrent` running slots, at most `max_waiting`
//! requests waiting for one, and an immediate refusal (429) beyond that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Admission control shared by all requests of a server.
#[derive(Debug)]
pub struct Queue {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_concurrent: usize,
}

/// A running slot; dropping it frees the slot for the next waiting request.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Decrements the waiting count when a waiter gets its slot or goes away.
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Queue {
    /// A queue with `max_concurrent` slots (at least 1) and room for `max_waiting` waiters.
    pub fn new(max_concurrent: usize, max_waiting: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Queue {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_concurrent,
        }
    }

    /// Waits in FIFO order for a slot, or fails at once with 429 when the queue is full.
    pub async fn acquire(&self) -> Result<Slot, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.max_waiting).then_some(w + 1)
            })
            .is_ok();
        if !admitted {
            return Err(ApiError::queue_full());
        }
        let _guard = WaitGuard(&self.waiting);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the request queue is closed"))?;
        Ok(Slot { _permit: permit })
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests holding a slot now.
    pub fn running(&self) -> usize {
        self.max_concurrent - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_beyond_the_waiting_room() {
        let q = Arc::new(Queue::new(1, 1));
        let first = q.acquire().await.ok();
        assert!(first.is_some());
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.acquire().await.is_ok() });
        for _ in 0..100 {
            if q.waiting() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(q.waiting(), 1);
        let third = q.acquire().await;
        assert_eq!(third.err().map(|e| e.status.as_u16()), Some(429));
        drop(first);
        assert_eq!(waiter.await.ok(), Some(true));
        assert_eq!(q.waiting(), 0);
        assert_eq!(q.running(), 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let q = Arc::new(Queue::new(1, 1));
        let first = q.acquire().await.ok();
        let fut = q.acquire();
        let timed = tokio::time::timeout(std::time::Duration::from_millis(20), fut).await;
        assert!(timed.is_err());
        assert_eq!(q.waiting(), 0);
        drop(first);
        assert!(q.acquire().await.is_ok());
    }
}
