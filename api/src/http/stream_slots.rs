//! Open `/v1/events/stream` responses per API key, on this instance: each one holds a task, a
//! connection and a page of events for as long as the client stays, so a key gets a few
//! (`IDENTITY_MAX_STREAMS_PER_KEY`), not as many as it cares to open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream of a key; dropping it (the response ends or the client leaves) frees it.
pub struct StreamSlot {
    key_id: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more stream of `key_id`, or `None` when it holds `max` already.
    pub fn take(&self, key_id: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(key_id).copied().unwrap_or(0) >= self.max {
            return None;
        }
        *open.entry(key_id.to_owned()).or_insert(0) += 1;
        Some(StreamSlot {
            key_id: key_id.to_owned(),
            open: self.open.clone(),
        })
    }

    /// Streams open for `key_id` now.
    pub fn open(&self, key_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(key_id).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_max_slots_and_freed_ones_back() {
        let slots = StreamSlots::new(2);
        let first = slots.take("k1").expect("first");
        let _second = slots.take("k1").expect("second");
        assert!(slots.take("k1").is_none(), "a third is refused");
        assert!(slots.take("k2").is_some(), "other keys have their own");
        drop(first);
        assert_eq!(slots.open("k1"), 1);
        assert!(
            slots.take("k1").is_some(),
            "a freed slot can be taken again"
        );
        assert_eq!(StreamSlots::new(0).take("k1").map(|_| ()), None);
    }
}
