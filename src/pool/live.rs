//! The pools in force, as the workers and the helper threads take them (a reload replaces them whole).

use std::sync::atomic::AtomicU64;

use super::Pools;

/// The pools in force, replaced whole by a reload (as `rules::Current` does for the policy): workers take the
/// new one at the top of their next loop iteration; requests already sent finish on their old server.
pub struct Live {
    current: std::sync::Mutex<std::sync::Arc<Pools>>,
    generation: AtomicU64,
}

impl Live {
    pub fn new(pools: Pools) -> Live {
        Live {
            current: std::sync::Mutex::new(std::sync::Arc::new(pools)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The pools in force and their generation.
    pub fn get(&self) -> (std::sync::Arc<Pools>, u64) {
        let g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (g.clone(), self.generation())
    }

    pub fn replace(&self, pools: Pools) {
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *g = std::sync::Arc::new(pools);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}
