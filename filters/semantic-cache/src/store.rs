//! The cache in Envoy shared data, safe across workers.
//!
//! Layout (per `vm_id`; `<p>` is [`KEY_PREFIX`]):
//! - `<p>.index`: one fixed-size record per slot (`max_entries` slots, 64
//!   bytes each): generation, size, tenant id, exact key, context key,
//!   created and expiry times. Every write to the cache is a compare-and-swap
//!   on this one key ([`update_with_cas`], bounded retries), so two workers
//!   never claim the same slot, and the entry count and bytes stay bounded.
//!   The key is created at configure time (Envoy has no conditional create).
//! - `<p>.<slot>.vector` and `<p>.<slot>.answer`: the entry's embedding and
//!   its stored answer. Each starts with a magic, the slot's generation and a
//!   checksum: a reader uses them only if the generation equals the index's
//!   (else another worker is rewriting the slot: a miss) and the checksum
//!   holds (else the entry is corrupt: ignored and counted).
//!
//! A lookup reads the index, then only the candidates' vectors (same tenant
//! and context key, not expired) and the winner's answer: a brute-force scan
//! whose cost is the index (64 bytes × slots) plus one vector per candidate.
//! Eviction when full: a free slot, else an expired one, else the oldest.

use crate::key::Key;
use aigw_shared::counter::{update_with_cas, SharedStore, UpdateError};

/// Prefix of every shared-data key of the cache.
pub use aigw_shared::contract::SEMANTIC_CACHE_KEY_PREFIX as KEY_PREFIX;

const INDEX_MAGIC: &[u8; 4] = b"SCI1";
const VECTOR_MAGIC: &[u8; 4] = b"SCV1";
const ANSWER_MAGIC: &[u8; 4] = b"SCA1";
/// Bytes of one slot record in the index.
pub const SLOT_BYTES: usize = 64;
const INDEX_HEADER_BYTES: usize = 8;
const RECORD_HEADER_BYTES: usize = 16;
/// CAS tries for an index update.
pub const CAS_TRIES: u32 = 8;

/// One slot of the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// Bumped each time the slot gets a new entry.
    pub generation: u32,
    /// Bytes the entry's vector and answer take in shared data.
    pub bytes: u32,
    pub tenant: u64,
    pub exact: Key,
    pub context: Key,
    pub created_s: u64,
    /// 0: the slot is free.
    pub expires_s: u64,
}

impl Slot {
    pub fn occupied(&self) -> bool {
        self.expires_s != 0
    }

    pub fn live(&self, now_s: u64) -> bool {
        self.expires_s > now_s
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.tenant.to_le_bytes());
        out.extend_from_slice(&self.exact.to_le_bytes());
        out.extend_from_slice(&self.context.to_le_bytes());
        out.extend_from_slice(&self.created_s.to_le_bytes());
        out.extend_from_slice(&self.expires_s.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let mut reader = Reader(bytes);
        Some(Slot {
            generation: u32::from_le_bytes(reader.take()?),
            bytes: u32::from_le_bytes(reader.take()?),
            tenant: u64::from_le_bytes(reader.take()?),
            exact: u128::from_le_bytes(reader.take()?),
            context: u128::from_le_bytes(reader.take()?),
            created_s: u64::from_le_bytes(reader.take()?),
            expires_s: u64::from_le_bytes(reader.take()?),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

/// The decoded index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub slots: Vec<Slot>,
}

impl Index {
    pub fn empty(slots: usize) -> Self {
        Index { slots: vec![Slot::default(); slots] }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + SLOT_BYTES * self.slots.len());
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        for slot in &self.slots {
            slot.encode(&mut out);
        }
        out
    }

    /// `None` when the bytes are not an index of `slots` slots.
    pub fn decode(bytes: &[u8], slots: usize) -> Option<Index> {
        let (header, body) = bytes.split_at_checked(INDEX_HEADER_BYTES)?;
        if header.get(..4)? != INDEX_MAGIC {
            return None;
        }
        let count = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?) as usize;
        if count != slots || body.len() != count.checked_mul(SLOT_BYTES)? {
            return None;
        }
        Some(Index { slots: body.chunks_exact(SLOT_BYTES).map(Slot::decode).collect::<Option<Vec<_>>>()? })
    }

    /// Occupied entries and their bytes (what the gauges report).
    pub fn usage(&self) -> (u64, u64) {
        self.slots.iter().filter(|s| s.occupied()).fold((0, 0), |(n, b), s| (n + 1, b + u64::from(s.bytes)))
    }
}

/// Detects torn, truncated or foreign bytes in a record. Only the cache's own
/// VMs write these keys, so this is an integrity check, not a MAC: a fast
/// multiply-rotate over 8-byte words (a keyed SipHash here made a lookup over
/// 1,000 vectors three times slower; DESIGN.md#cost).
fn checksum(generation: u32, payload: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = 0x9e37_79b9_7f4a_7c15 ^ u64::from(generation) ^ (payload.len() as u64).rotate_left(32);
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        let value = <[u8; 8]>::try_from(word).map(u64::from_le_bytes).unwrap_or(0);
        hash = (hash ^ value).wrapping_mul(PRIME).rotate_left(29);
    }
    for byte in words.remainder() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(PRIME);
    }
    hash ^ (hash >> 31)
}

fn encode_record(magic: &[u8; 4], generation: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&checksum(generation, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What reading a slot's record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// The payload, borrowed from the bytes read.
    Ok(&'a [u8]),
    /// Absent, cleared, or of another generation: the slot is being rewritten.
    Stale,
    /// Unreadable bytes or a checksum that does not hold.
    Corrupt,
}

fn decode_record<'a>(bytes: Option<&'a [u8]>, magic: &[u8; 4], generation: u32) -> Record<'a> {
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else { return Record::Stale };
    let mut reader = Reader(bytes);
    let (Some(found_magic), Some(found_generation), Some(sum)) =
        (reader.take::<4>(), reader.take::<4>().map(u32::from_le_bytes), reader.take::<8>().map(u64::from_le_bytes))
    else {
        return Record::Corrupt;
    };
    if &found_magic != magic {
        return Record::Corrupt;
    }
    if found_generation != generation {
        return Record::Stale;
    }
    let payload = reader.0;
    if checksum(generation, payload) != sum {
        return Record::Corrupt;
    }
    Record::Ok(payload)
}

/// The cosine similarity of a unit vector and a stored one (f32 LE bytes),
/// without decoding it first; `None` for another length.
fn similarity_to(vector: &[f32], stored: &[u8]) -> Option<f64> {
    if stored.len() != vector.len() * 4 {
        return None;
    }
    let dot: f32 = stored
        .chunks_exact(4)
        .zip(vector)
        .map(|(bytes, x)| <[u8; 4]>::try_from(bytes).map(f32::from_le_bytes).unwrap_or(0.0) * x)
        .sum();
    Some(f64::from(dot).clamp(-1.0, 1.0))
}

pub fn index_key() -> String {
    format!("{KEY_PREFIX}.index")
}

pub fn vector_key(slot: usize) -> String {
    format!("{KEY_PREFIX}.{slot}.vector")
}

pub fn answer_key(slot: usize) -> String {
    format!("{KEY_PREFIX}.{slot}.answer")
}

/// A record read through [`Cache::record`].
enum Read<T> {
    Ok(T),
    Stale,
    Corrupt,
}

/// A new entry to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub tenant: u64,
    pub exact: Key,
    pub context: Key,
    /// Unit vector; empty when the request was not embedded (exact matches only).
    pub vector: Vec<f32>,
    pub answer: Vec<u8>,
    pub ttl_seconds: u64,
}

impl NewEntry {
    /// Bytes the entry takes in shared data.
    pub fn bytes(&self) -> usize {
        2 * RECORD_HEADER_BYTES + self.vector.len() * 4 + self.answer.len()
    }
}

/// A hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub slot: usize,
    pub similarity: f64,
    pub answer: Vec<u8>,
    pub created_s: u64,
}

/// What a lookup saw, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lookup {
    pub found: Option<Found>,
    /// Vectors compared.
    pub compared: usize,
    /// Records ignored as corrupt (and the index, if it was).
    pub corrupt: usize,
    /// The best similarity seen below the threshold (for the histogram).
    pub best_below: Option<f64>,
}

/// The outcome of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub slot: usize,
    /// Live entries evicted to make room (not counting expired ones).
    pub evicted: usize,
    /// The index was unreadable and started afresh.
    pub reset: bool,
}

/// Why an insert did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// Larger than `max_entry_bytes`.
    TooLarge,
    /// Every CAS try met another writer.
    Contended,
    /// The host refused the write.
    Store,
}

impl InsertError {
    pub fn reason(self) -> &'static str {
        match self {
            InsertError::TooLarge => "too_large",
            InsertError::Contended => "contended",
            InsertError::Store => "store_failed",
        }
    }
}

/// The cache over a shared-data store.
pub struct Cache<'a, S: SharedStore + ?Sized> {
    pub store: &'a S,
    pub slots: usize,
}

impl<'a, S: SharedStore + ?Sized> Cache<'a, S> {
    pub fn new(store: &'a S, slots: usize) -> Self {
        Cache { store, slots }
    }

    /// Creates the index if it is absent (at configure time, before traffic:
    /// Envoy has no conditional create, so a first write racing another could
    /// lose an entry). Returns whether it wrote.
    pub fn ensure_index(&self) -> bool {
        let (current, _) = self.store.get(&index_key());
        if current.is_some_and(|bytes| Index::decode(&bytes, self.slots).is_some()) {
            return false;
        }
        self.store.set(&index_key(), &Index::empty(self.slots).encode(), None).is_ok()
    }

    /// The index; `None` when it is absent or unreadable (the next writer resets it).
    pub fn index(&self) -> Option<Index> {
        let (bytes, _) = self.store.get(&index_key());
        bytes.and_then(|bytes| Index::decode(&bytes, self.slots))
    }

    /// Reads a record and hands its payload to `use_payload`.
    fn record<T>(&self, key: &str, magic: &[u8; 4], generation: u32, use_payload: impl FnOnce(&[u8]) -> T) -> Read<T> {
        let (bytes, _) = self.store.get(key);
        match decode_record(bytes.as_deref(), magic, generation) {
            Record::Ok(payload) => Read::Ok(use_payload(payload)),
            Record::Stale => Read::Stale,
            Record::Corrupt => Read::Corrupt,
        }
    }

    /// The entry stored under exactly this request.
    pub fn lookup_exact(&self, index: &Index, tenant: u64, exact: Key, now_s: u64) -> Lookup {
        let mut lookup = Lookup::default();
        let hit = index.slots.iter().enumerate().find(|(_, s)| s.live(now_s) && s.tenant == tenant && s.exact == exact);
        if let Some((slot, entry)) = hit {
            match self.record(&answer_key(slot), ANSWER_MAGIC, entry.generation, <[u8]>::to_vec) {
                Read::Ok(answer) => {
                    lookup.found = Some(Found { slot, similarity: 1.0, answer, created_s: entry.created_s })
                }
                Read::Corrupt => lookup.corrupt += 1,
                Read::Stale => {}
            }
        }
        lookup
    }

    /// The nearest entry of the same tenant and context, if its cosine
    /// similarity is at least `threshold`.
    pub fn lookup_semantic(
        &self,
        index: &Index,
        tenant: u64,
        context: Key,
        vector: &[f32],
        threshold: f64,
        now_s: u64,
    ) -> Lookup {
        let mut lookup = Lookup::default();
        let mut best: Option<(usize, f64)> = None;
        for (slot, entry) in index.slots.iter().enumerate() {
            if !entry.live(now_s) || entry.tenant != tenant || entry.context != context {
                continue;
            }
            // `None`: stored without a vector (exact matches only); Some(None): another length.
            let compared = self.record(&vector_key(slot), VECTOR_MAGIC, entry.generation, |stored| {
                (!stored.is_empty()).then(|| similarity_to(vector, stored))
            });
            let similarity = match compared {
                Read::Ok(Some(Some(similarity))) => similarity,
                Read::Ok(Some(None)) => {
                    lookup.compared += 1;
                    continue;
                }
                Read::Ok(None) | Read::Stale => continue,
                Read::Corrupt => {
                    lookup.corrupt += 1;
                    continue;
                }
            };
            lookup.compared += 1;
            if best.is_none_or(|(_, b)| similarity > b) {
                best = Some((slot, similarity));
            }
        }
        match best {
            Some((slot, similarity)) if similarity >= threshold => {
                let Some(entry) = index.slots.get(slot) else { return lookup };
                match self.record(&answer_key(slot), ANSWER_MAGIC, entry.generation, <[u8]>::to_vec) {
                    Read::Ok(answer) => {
                        lookup.found = Some(Found { slot, similarity, answer, created_s: entry.created_s })
                    }
                    Read::Corrupt => lookup.corrupt += 1,
                    Read::Stale => {}
                }
            }
            Some((_, similarity)) => lookup.best_below = Some(similarity),
            None => {}
        }
        lookup
    }

    /// Stores an entry: claims a slot with one CAS on the index (evicting to
    /// stay within `max_bytes`), then writes the slot's records.
    pub fn insert(
        &self,
        entry: &NewEntry,
        now_s: u64,
        max_entry_bytes: usize,
        max_bytes: usize,
    ) -> Result<Inserted, InsertError> {
        let size = entry.bytes();
        if size > max_entry_bytes || size > max_bytes {
            return Err(InsertError::TooLarge);
        }
        let mut outcome = Inserted { slot: 0, evicted: 0, reset: false };
        let mut cleared: Vec<(usize, u32)> = Vec::new();
        let mut generation = 0;
        let result = update_with_cas(self.store, &index_key(), CAS_TRIES, |current| {
            let decoded = current.and_then(|bytes| Index::decode(bytes, self.slots));
            outcome.reset = decoded.is_none();
            let mut index = decoded.unwrap_or_else(|| Index::empty(self.slots));
            cleared.clear();
            outcome.evicted = 0;
            let slot = choose_slot(&index, entry, now_s).ok_or(())?;
            // Make room: expired entries first, then the oldest live ones.
            let mut used: u64 = index
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != slot && s.occupied())
                .map(|(_, s)| u64::from(s.bytes))
                .sum();
            while used + size as u64 > max_bytes as u64 {
                let victim = index
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| *i != slot && s.occupied())
                    .min_by_key(|(_, s)| (s.live(now_s), s.created_s))
                    .map(|(i, s)| (i, *s));
                let Some((victim, old)) = victim else { break };
                if old.live(now_s) {
                    outcome.evicted += 1;
                }
                used = used.saturating_sub(u64::from(old.bytes));
                cleared.push((victim, old.generation));
                if let Some(s) = index.slots.get_mut(victim) {
                    s.expires_s = 0;
                }
            }
            let Some(target) = index.slots.get_mut(slot) else { return Err(()) };
            if target.live(now_s) && !(target.tenant == entry.tenant && target.exact == entry.exact) {
                outcome.evicted += 1;
            }
            generation = target.generation.wrapping_add(1);
            *target = Slot {
                generation,
                bytes: u32::try_from(size).unwrap_or(u32::MAX),
                tenant: entry.tenant,
                exact: entry.exact,
                context: entry.context,
                created_s: now_s,
                expires_s: now_s.saturating_add(entry.ttl_seconds).max(1),
            };
            outcome.slot = slot;
            Ok(index.encode())
        });
        match result {
            Ok(_) => {}
            Err(UpdateError::Contended { .. }) => return Err(InsertError::Contended),
            Err(UpdateError::Store) | Err(UpdateError::Rejected(())) => return Err(InsertError::Store),
        }
        let vector = crate::embedding::encode_f32(&entry.vector);
        let wrote_vector =
            self.store.set(&vector_key(outcome.slot), &encode_record(VECTOR_MAGIC, generation, &vector), None);
        let wrote_answer =
            self.store.set(&answer_key(outcome.slot), &encode_record(ANSWER_MAGIC, generation, &entry.answer), None);
        if wrote_vector.is_err() || wrote_answer.is_err() {
            return Err(InsertError::Store);
        }
        for (slot, generation) in cleared {
            self.clear_records(slot, generation);
        }
        Ok(outcome)
    }

    /// Frees a slot's records if they still belong to `generation` (a CAS
    /// write, so a newer entry another worker just wrote is never erased).
    fn clear_records(&self, slot: usize, generation: u32) {
        for key in [vector_key(slot), answer_key(slot)] {
            let (bytes, cas) = self.store.get(&key);
            // The generation sits after the 4-byte magic.
            let ours = bytes.as_deref().and_then(|b| b.get(4..8)) == Some(&generation.to_le_bytes()[..]);
            if ours {
                let _ = self.store.set(&key, &[], cas);
            }
        }
    }

    /// Removes every entry of a tenant. Returns how many were removed.
    pub fn clear_tenant(&self, tenant: u64) -> Result<usize, InsertError> {
        let mut cleared: Vec<(usize, u32)> = Vec::new();
        let result = update_with_cas(self.store, &index_key(), CAS_TRIES, |current| {
            let mut index =
                current.and_then(|bytes| Index::decode(bytes, self.slots)).unwrap_or_else(|| Index::empty(self.slots));
            cleared.clear();
            for (i, slot) in index.slots.iter_mut().enumerate() {
                if slot.occupied() && slot.tenant == tenant {
                    cleared.push((i, slot.generation));
                    slot.expires_s = 0;
                }
            }
            Ok::<_, ()>(index.encode())
        });
        match result {
            Ok(_) => {}
            Err(UpdateError::Contended { .. }) => return Err(InsertError::Contended),
            Err(_) => return Err(InsertError::Store),
        }
        for (slot, generation) in &cleared {
            self.clear_records(*slot, *generation);
        }
        Ok(cleared.len())
    }
}

/// The slot for a new entry: the same request's slot, else a free one, else
/// an expired one, else the oldest.
fn choose_slot(index: &Index, entry: &NewEntry, now_s: u64) -> Option<usize> {
    let slots = index.slots.iter().enumerate();
    let same = slots.clone().find(|(_, s)| s.occupied() && s.tenant == entry.tenant && s.exact == entry.exact);
    let free = || slots.clone().find(|(_, s)| !s.occupied());
    let expired = || slots.clone().find(|(_, s)| !s.live(now_s));
    let oldest = || slots.clone().min_by_key(|(_, s)| s.created_s);
    same.or_else(free).or_else(expired).or_else(oldest).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::counter::memory::MemoryStore;

    fn entry(tenant: u64, exact: u128, vector: Vec<f32>, answer: &str) -> NewEntry {
        NewEntry { tenant, exact, context: 7, vector, answer: answer.as_bytes().to_vec(), ttl_seconds: 60 }
    }

    fn unit(x: f32, y: f32) -> Vec<f32> {
        crate::embedding::normalise(vec![x, y]).unwrap()
    }

    #[test]
    fn index_round_trip_and_rejects_garbage() {
        let mut index = Index::empty(3);
        index.slots[1] = Slot { generation: 2, bytes: 10, tenant: 3, exact: 4, context: 5, created_s: 6, expires_s: 7 };
        let bytes = index.encode();
        assert_eq!(bytes.len(), 8 + 3 * SLOT_BYTES);
        assert_eq!(Index::decode(&bytes, 3), Some(index));
        assert_eq!(Index::decode(&bytes, 4), None);
        assert_eq!(Index::decode(&bytes[..bytes.len() - 1], 3), None);
        assert_eq!(Index::decode(b"garbage!", 0), None);
    }

    #[test]
    fn checksum_sees_every_byte() {
        let payload: Vec<u8> = (0..37).collect();
        let base = checksum(3, &payload);
        assert_ne!(base, checksum(4, &payload), "generation");
        assert_ne!(base, checksum(3, &payload[..36]), "length");
        for i in 0..payload.len() {
            let mut flipped = payload.clone();
            flipped[i] ^= 1;
            assert_ne!(base, checksum(3, &flipped), "byte {i}");
        }
    }

    #[test]
    fn exact_and_semantic_hits() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 4);
        assert!(cache.ensure_index());
        assert!(!cache.ensure_index());
        cache.insert(&entry(1, 10, unit(1.0, 0.0), "A"), 100, 1000, 10_000).unwrap();
        let index = cache.index().unwrap();
        let hit = cache.lookup_exact(&index, 1, 10, 101).found.unwrap();
        assert_eq!((hit.answer.as_slice(), hit.similarity, hit.created_s), (&b"A"[..], 1.0, 100));
        assert!(cache.lookup_exact(&index, 2, 10, 101).found.is_none(), "another tenant");
        let near = cache.lookup_semantic(&index, 1, 7, &unit(1.0, 0.1), 0.9, 101);
        assert_eq!(near.found.unwrap().answer, b"A");
        let far = cache.lookup_semantic(&index, 1, 7, &unit(0.0, 1.0), 0.9, 101);
        assert!(far.found.is_none());
        assert_eq!(far.compared, 1);
        assert!(cache.lookup_semantic(&index, 2, 7, &unit(1.0, 0.0), 0.5, 101).found.is_none(), "another tenant");
        assert!(cache.lookup_semantic(&index, 1, 8, &unit(1.0, 0.0), 0.5, 101).found.is_none(), "another context");
        assert!(cache.lookup_exact(&index, 1, 10, 160).found.is_none(), "expired");
    }

    #[test]
    fn eviction_by_count_and_bytes() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 2);
        cache.ensure_index();
        cache.insert(&entry(1, 1, vec![], "a"), 100, 1000, 10_000).unwrap();
        cache.insert(&entry(1, 2, vec![], "b"), 101, 1000, 10_000).unwrap();
        let third = cache.insert(&entry(1, 3, vec![], "c"), 102, 1000, 10_000).unwrap();
        assert_eq!((third.slot, third.evicted), (0, 1), "the oldest goes");
        let index = cache.index().unwrap();
        assert!(cache.lookup_exact(&index, 1, 1, 103).found.is_none());
        assert!(cache.lookup_exact(&index, 1, 3, 103).found.is_some());
        // Bytes: each entry is 33 bytes; a limit of 70 keeps two, 40 keeps one.
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 4);
        cache.insert(&entry(1, 1, vec![], "a"), 100, 1000, 40).unwrap();
        let second = cache.insert(&entry(1, 2, vec![], "b"), 101, 1000, 40).unwrap();
        assert_eq!(second.evicted, 1);
        assert_eq!(cache.index().unwrap().usage(), (1, 33));
        // The evicted entry's records were freed.
        assert_eq!(store.get(&answer_key(0)).0, Some(vec![]));
        assert_eq!(cache.insert(&entry(1, 3, vec![], &"x".repeat(100)), 102, 50, 1000), Err(InsertError::TooLarge));
    }

    #[test]
    fn same_request_replaces_its_entry() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 3);
        cache.insert(&entry(1, 1, vec![], "old"), 100, 1000, 10_000).unwrap();
        let again = cache.insert(&entry(1, 1, vec![], "new"), 101, 1000, 10_000).unwrap();
        assert_eq!((again.slot, again.evicted), (0, 0));
        let index = cache.index().unwrap();
        assert_eq!(index.usage().0, 1);
        assert_eq!(cache.lookup_exact(&index, 1, 1, 102).found.unwrap().answer, b"new");
    }

    #[test]
    fn corrupt_records_are_ignored_and_counted() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 2);
        cache.insert(&entry(1, 1, unit(1.0, 0.0), "a"), 100, 1000, 10_000).unwrap();
        let (mut bytes, _) = store.get(&answer_key(0));
        if let Some(last) = bytes.as_mut().and_then(|b| b.last_mut()) {
            *last ^= 0xff;
        }
        store.set(&answer_key(0), &bytes.unwrap(), None).unwrap();
        store.set(&vector_key(0), b"junk", None).unwrap();
        let index = cache.index().unwrap();
        let exact = cache.lookup_exact(&index, 1, 1, 101);
        assert_eq!((exact.found.is_none(), exact.corrupt), (true, 1));
        let semantic = cache.lookup_semantic(&index, 1, 7, &unit(1.0, 0.0), 0.5, 101);
        assert_eq!((semantic.found.is_none(), semantic.corrupt), (true, 1));
        // A corrupt index reads as an error and the next writer starts afresh.
        store.set(&index_key(), b"not an index", None).unwrap();
        assert!(cache.index().is_none());
        let inserted = cache.insert(&entry(1, 2, vec![], "b"), 102, 1000, 10_000).unwrap();
        assert!(inserted.reset);
        assert_eq!(cache.index().unwrap().usage().0, 1);
    }

    #[test]
    fn a_stale_generation_is_a_miss_not_corruption() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 1);
        cache.insert(&entry(1, 1, vec![], "a"), 100, 1000, 10_000).unwrap();
        let index = cache.index().unwrap();
        // Another worker rewrites the slot after we read the index.
        cache.insert(&entry(1, 2, vec![], "b"), 101, 1000, 10_000).unwrap();
        let lookup = cache.lookup_exact(&index, 1, 1, 101);
        assert_eq!((lookup.found, lookup.corrupt), (None, 0));
    }

    #[test]
    fn contended_index_gives_up_after_bounded_tries() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 2);
        cache.ensure_index();
        store.force_conflicts(2);
        assert!(cache.insert(&entry(1, 1, vec![], "a"), 100, 1000, 10_000).is_ok());
        store.force_conflicts(100);
        assert_eq!(cache.insert(&entry(1, 2, vec![], "b"), 100, 1000, 10_000), Err(InsertError::Contended));
    }

    #[test]
    fn clear_tenant_removes_only_that_tenant() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 4);
        cache.insert(&entry(1, 1, vec![], "a"), 100, 1000, 10_000).unwrap();
        cache.insert(&entry(2, 2, vec![], "b"), 100, 1000, 10_000).unwrap();
        cache.insert(&entry(1, 3, vec![], "c"), 100, 1000, 10_000).unwrap();
        assert_eq!(cache.clear_tenant(1), Ok(2));
        let index = cache.index().unwrap();
        assert_eq!(index.usage().0, 1);
        assert!(cache.lookup_exact(&index, 2, 2, 101).found.is_some());
        assert!(cache.lookup_exact(&index, 1, 1, 101).found.is_none());
    }
}
