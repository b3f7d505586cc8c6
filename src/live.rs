//! `Live<T>`: a value that a config reload replaces while readers keep using the one they took.
//!
//! Readers call `load()` once per unit of work (a request, a dispatch round) and hold the `Arc`
//! they got, so one request never sees half of an old and half of a new configuration, and work
//! already started finishes with the settings it started with. Writers (only the reload) `store`
//! a whole new value.

use std::sync::{Arc, RwLock};

pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        // A panic while holding the lock can only happen inside `store`'s assignment, which
        // cannot panic; a poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value for every later `load`.
    pub fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

impl<T: Default> Default for Live<T> {
    fn default() -> Self {
        Live::new(T::default())
    }
}
