//! The count of a module's running calls, and the wait for it to reach zero at shutdown.
//!
//! Owns the counter every served call enters and leaves. Entering and leaving are two
//! atomic operations and nothing else while nobody drains: the count is on every call's path
//! (the reply waits for the guard's drop), and a `watch` channel there cost a write lock and
//! the eight mutexes of its notifier per call, whether or not anyone watched. Never blocks and
//! never counts anything but calls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Calls running now, and the shutdown's wait for none.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    /// Set once a drain waits: from then on the drop to zero notifies.
    watched: AtomicBool,
    idle: Notify,
}

impl InFlight {
    /// Counts one running call until the guard is dropped.
    pub(crate) fn enter(&self) -> Busy<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// Calls running now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no call is running.
    pub(crate) async fn idle(&self) {
        // Announce the wait before looking at the count: a call ending after the look sees
        // `watched` and notifies; one ending before it left the count at zero, which the look
        // sees (both orders are sequentially consistent).
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the look, so a notification between the two is kept.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One running call, counted until dropped.
pub(crate) struct Busy<'a>(&'a InFlight);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let left = self.0.count.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && self.0.watched.load(Ordering::SeqCst) {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_returns_at_once_when_nothing_runs() {
        let calls = InFlight::default();
        tokio::time::timeout(Duration::from_secs(5), calls.idle())
            .await
            .expect("idle with no call running");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_waits_for_the_last_call_to_end() {
        let calls = Arc::new(InFlight::default());
        let (entered, wait_entered) = tokio::sync::oneshot::channel();
        let (finish, wait_finish) = tokio::sync::oneshot::channel::<()>();
        let running = {
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                let first = calls.enter();
                let second = calls.enter();
                drop(first);
                let _ = entered.send(());
                let _ = wait_finish.await;
                drop(second);
            })
        };
        wait_entered.await.expect("the call task runs");
        let idle = {
            let calls = Arc::clone(&calls);
            tokio::spawn(async move { calls.idle().await })
        };
        // Still one call running: the wait must not end on its own.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), async {
                while !idle.is_finished() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .is_err(),
            "idle returned while a call was running"
        );
        assert_eq!(calls.count(), 1);
        let _ = finish.send(());
        running.await.expect("the call task ends");
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle returns once the last call ended")
            .expect("the idle task does not panic");
        assert_eq!(calls.count(), 0);
    }
}
