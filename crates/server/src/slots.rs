//! What a server's jobs wait on: its own slots (`--jobs`, across all pipelines) and, for jobs
//! on agents, a flag per job that the report's arrival on this replica sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use salve_runner::JobControl;

/// Jobs this server runs itself at once (`--jobs`).
pub(crate) struct LocalSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl LocalSlots {
    pub(crate) fn new(count: usize) -> LocalSlots {
        LocalSlots { free: Mutex::new(count), freed: Condvar::new() }
    }

    /// Waits for a free slot; gives up (none) when the job is stopped first.
    pub(crate) fn take(&self, control: &JobControl) -> Option<Slot<'_>> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if control.stop_reason().is_some() {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(Slot(self));
            }
            free = self.freed.wait_timeout(free, Duration::from_millis(100)).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

pub(crate) struct Slot<'a>(&'a LocalSlots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// Agent jobs this server waits for, each with a flag set when its report arrives here (a
/// report that reaches another replica is found by polling the store).
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<String, Arc<AtomicBool>>>);

impl Waiting {
    pub(crate) fn add(&self, job_id: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(job_id.to_owned(), flag.clone());
        flag
    }

    pub(crate) fn remove(&self, job_id: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(job_id);
    }

    pub(crate) fn reported(&self, job_id: &str) {
        if let Some(flag) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(job_id) {
            flag.store(true, Ordering::Release);
        }
    }
}
