//! Counters in proxy-wasm shared data, safe across Envoy workers.
//!
//! Each Envoy worker runs its own VM; shared data (per `vm_id`) is the only
//! memory they share. A plain get-then-set loses updates when two workers
//! race, so every update here is a compare-and-swap, retried a bounded number
//! of times: a worker never spins, and a caller learns when it gave up.

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another worker wrote the key since we read it.
    CasMismatch,
    /// The host refused the write for another reason.
    Failed,
}

/// The part of the host's shared-data API a counter needs. The real one wraps
/// `proxy_get_shared_data`/`proxy_set_shared_data`; tests use an in-memory one.
pub trait SharedStore {
    /// The value and its CAS token, or `(None, None)` when the key is absent.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the key's CAS token still equals `cas`.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// How many times an update is retried after a CAS conflict before giving up.
/// Conflicts need two workers writing the same key in the same microseconds;
/// eight tries make a persistent failure practically impossible while bounding
/// the work per request.
pub const DEFAULT_CAS_RETRIES: u32 = 8;

/// Why an update did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError<E> {
    /// The update function refused (e.g. a limit would be exceeded).
    Rejected(E),
    /// Every try met a conflict.
    Contended { tries: u32 },
    /// The store failed.
    Store,
}

/// Reads `key`, computes the new value with `update`, and writes it with CAS,
/// retrying on conflict up to `max_tries` times in all. Returns the value
/// written. `update` sees the current bytes (or `None`) on every try.
///
/// Envoy has no conditional create: a write to an absent key succeeds whatever
/// CAS it carries, so two workers making a key's very first write at once can
/// overwrite each other. Callers that cannot afford that create their keys
/// up front, while no traffic flows (token-counter does so at configure time).
pub fn update_with_cas<S, E, F>(store: &S, key: &str, max_tries: u32, mut update: F) -> Result<Vec<u8>, UpdateError<E>>
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> Result<Vec<u8>, E>,
{
    for _ in 0..max_tries {
        let (current, cas) = store.get(key);
        let next = update(current.as_deref()).map_err(UpdateError::Rejected)?;
        match store.set(key, &next, cas) {
            Ok(()) => return Ok(next),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Failed) => return Err(UpdateError::Store),
        }
    }
    Err(UpdateError::Contended { tries: max_tries })
}

/// Decodes a counter value (u64 little-endian); anything else reads as 0.
pub fn decode_u64(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Adds `delta` (which may be negative) to a u64 counter, saturating at 0 and
/// at `u64::MAX`. Returns the new value.
pub fn add<S: SharedStore + ?Sized>(store: &S, key: &str, delta: i64, max_tries: u32) -> Result<u64, UpdateError<()>> {
    let written = update_with_cas(store, key, max_tries, |current| {
        let value = decode_u64(current);
        let next = if delta >= 0 {
            value.saturating_add(delta.unsigned_abs())
        } else {
            value.saturating_sub(delta.unsigned_abs())
        };
        Ok::<_, ()>(next.to_le_bytes().to_vec())
    })?;
    Ok(decode_u64(Some(&written)))
}

#[cfg(any(test, feature = "testing"))]
pub mod memory {
    //! An in-memory [`SharedStore`] with Envoy's semantics, for native tests.
    use super::{SharedStore, StoreError};
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Debug, Default)]
    pub struct MemoryStore {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Writes to fail with CasMismatch before succeeding, to simulate races.
        pub forced_conflicts: RefCell<u32>,
    }

    impl MemoryStore {
        pub fn new() -> Self {
            Self::default()
        }

        /// Makes the next `n` writes fail as if another worker had written first.
        pub fn force_conflicts(&self, n: u32) {
            *self.forced_conflicts.borrow_mut() = n;
        }

        pub fn len(&self) -> usize {
            self.entries.borrow().len()
        }

        pub fn is_empty(&self) -> bool {
            self.entries.borrow().is_empty()
        }
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.entries.borrow().get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            {
                let mut forced = self.forced_conflicts.borrow_mut();
                if *forced > 0 {
                    *forced -= 1;
                    // The "other worker" bumps the value's version.
                    if let Some(entry) = self.entries.borrow_mut().get_mut(key) {
                        entry.1 += 1;
                    }
                    return Err(StoreError::CasMismatch);
                }
            }
            let mut entries = self.entries.borrow_mut();
            let current = entries.get(key).map(|(_, c)| *c);
            // Envoy: a CAS of 0/None writes unconditionally; otherwise it must match.
            if let (Some(expected), Some(actual)) = (cas, current) {
                if expected != 0 && expected != actual {
                    return Err(StoreError::CasMismatch);
                }
            }
            let next_cas = current.unwrap_or(0) + 1;
            entries.insert(key.to_string(), (value.to_vec(), next_cas));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryStore;
    use super::*;

    #[test]
    fn add_and_subtract() {
        let store = MemoryStore::new();
        assert_eq!(add(&store, "k", 5, 3).unwrap(), 5);
        assert_eq!(add(&store, "k", 7, 3).unwrap(), 12);
        assert_eq!(add(&store, "k", -20, 3).unwrap(), 0);
    }

    #[test]
    fn conflicts_are_retried() {
        let store = MemoryStore::new();
        add(&store, "k", 1, 3).unwrap();
        store.force_conflicts(2);
        assert_eq!(add(&store, "k", 1, 3).unwrap(), 2);
    }

    #[test]
    fn persistent_conflicts_give_up_after_bounded_tries() {
        let store = MemoryStore::new();
        store.force_conflicts(100);
        let mut calls = 0;
        let result = update_with_cas(&store, "k", 4, |_| {
            calls += 1;
            Ok::<_, ()>(vec![1])
        });
        assert_eq!(result, Err(UpdateError::Contended { tries: 4 }));
        assert_eq!(calls, 4);
    }

    #[test]
    fn a_stale_cas_is_refused_and_the_retry_sees_the_new_value() {
        let store = MemoryStore::new();
        add(&store, "k", 10, 3).unwrap();
        // Simulate another worker adding 5 between our read and write, once.
        let mut seen = Vec::new();
        let mut raced = false;
        let result = update_with_cas(&store, "k", 3, |current| {
            let value = decode_u64(current);
            seen.push(value);
            if !raced {
                raced = true;
                add(&store, "k", 5, 1).unwrap();
            }
            Ok::<_, ()>((value + 1).to_le_bytes().to_vec())
        });
        assert_eq!(decode_u64(Some(&result.unwrap())), 16);
        assert_eq!(seen, vec![10, 15]);
    }

    #[test]
    fn rejection_stops_without_writing() {
        let store = MemoryStore::new();
        let result = update_with_cas(&store, "k", 3, |_| Err::<Vec<u8>, _>("over limit"));
        assert_eq!(result, Err(UpdateError::Rejected("over limit")));
        assert!(store.is_empty());
    }

    #[test]
    fn decode_tolerates_garbage() {
        assert_eq!(decode_u64(None), 0);
        assert_eq!(decode_u64(Some(b"abc")), 0);
        assert_eq!(decode_u64(Some(&42u64.to_le_bytes())), 42);
    }
}
