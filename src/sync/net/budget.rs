//! A byte budget shared by every session of a server: the one global bound on what peers can
//! make it buffer.
//!
//! Each connection may buffer [`FREE_BYTES`] of peer data (a partly received frame, nodes
//! waiting for their commit or their link) on its own; every byte beyond that is taken from
//! the budget before the driver reads it. When the budget is spent, a connection that needs
//! more stops reading (the peer's writes then block in TCP) until other sessions give bytes
//! back, or until its idle timeout ends it. So the peer data held by a server stays under
//! `budget + connections x FREE_BYTES`, whatever its peers send.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

pub use crate::sync::limits::{FREE_BYTES, MIN_MEMORY_BUDGET};

/// A shared byte budget (cheap to clone: clones share one budget).
///
/// ```
/// use braidlog::sync::MemoryBudget;
/// let b = MemoryBudget::new(64 << 20);
/// assert_eq!((b.total(), b.in_use(), b.waiting()), (64 << 20, 0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sem: Semaphore,
    total: usize,
    waiting: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `bytes`, raised to [`MIN_MEMORY_BUDGET`] if smaller (a budget below one
    /// session's need would stall honest peers forever).
    pub fn new(bytes: usize) -> MemoryBudget {
        let total = bytes.clamp(MIN_MEMORY_BUDGET, Semaphore::MAX_PERMITS);
        MemoryBudget {
            inner: Arc::new(Inner {
                sem: Semaphore::new(total),
                total,
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Bytes currently taken by sessions.
    pub fn in_use(&self) -> usize {
        self.inner.total - self.inner.sem.available_permits()
    }

    /// Sessions currently not reading from their peer because the budget is spent.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they are free now.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        match self.inner.sem.try_acquire_many(n) {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until `n` bytes are free and takes them. Cancel-safe: dropped before it
    /// completes, it takes nothing.
    pub(crate) async fn take(&self, n: usize) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        let _w = Waiting(&self.inner.waiting);
        // More than the whole budget can never be granted: wait until the caller's timeout.
        let Ok(n32) = u32::try_from(n) else {
            return std::future::pending().await;
        };
        if n > self.inner.total {
            return std::future::pending().await;
        }
        match self.inner.sem.acquire_many(n32).await {
            Ok(p) => p.forget(),
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Gives `n` taken bytes back.
    pub(crate) fn give(&self, n: usize) {
        if n > 0 {
            self.inner.sem.add_permits(n);
        }
    }
}

/// What one connection holds from an optional budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held {
    budget: Option<MemoryBudget>,
    bytes: usize,
}

impl Held {
    pub(crate) fn new(budget: Option<MemoryBudget>) -> Held {
        Held { budget, bytes: 0 }
    }

    /// Adjusts the holding to cover `buffered` bytes of peer data (beyond [`FREE_BYTES`]).
    /// Surplus goes back at once; a shortfall is taken if free now, else returned: the
    /// caller must not read until [`Held::wait`] got it.
    pub(crate) fn cover(&mut self, buffered: usize) -> Option<usize> {
        let budget = self.budget.as_ref()?;
        let need = buffered.saturating_sub(FREE_BYTES);
        if need <= self.bytes {
            budget.give(self.bytes - need);
            self.bytes = need;
            return None;
        }
        let more = need - self.bytes;
        if budget.try_take(more) {
            self.bytes = need;
            return None;
        }
        Some(more)
    }

    /// Waits for `more` bytes (a shortfall [`Held::cover`] returned) and holds them.
    pub(crate) async fn wait(&mut self, more: usize) {
        if let Some(b) = &self.budget {
            b.take(more).await;
            self.bytes += more;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn held_bytes_come_back_and_a_shortfall_waits() {
        let b = MemoryBudget::new(0);
        assert_eq!(b.total(), MIN_MEMORY_BUDGET);
        let mut h = Held::new(Some(b.clone()));
        assert_eq!(h.cover(FREE_BYTES), None, "the free part takes nothing");
        assert_eq!(b.in_use(), 0);
        assert_eq!(h.cover(FREE_BYTES + MIN_MEMORY_BUDGET), None);
        assert_eq!(b.in_use(), MIN_MEMORY_BUDGET);
        let mut other = Held::new(Some(b.clone()));
        assert_eq!(
            other.cover(FREE_BYTES + 10),
            Some(10),
            "the budget is spent"
        );
        assert_eq!(h.cover(FREE_BYTES + MIN_MEMORY_BUDGET - 10), None);
        other.wait(10).await;
        assert_eq!(b.in_use(), MIN_MEMORY_BUDGET);
        drop((h, other));
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_the_whole_budget_is_never_granted() {
        let b = MemoryBudget::new(0);
        let mut h = Held::new(Some(b.clone()));
        let more = h.cover(FREE_BYTES + b.total() + 1).expect("a shortfall");
        let waited = tokio::time::timeout(std::time::Duration::from_secs(3600), h.wait(more));
        assert!(waited.await.is_err(), "waits until the caller's timeout");
        assert_eq!((b.waiting(), b.in_use()), (0, 0));
    }
}
