//! Token rate limits shared by every Envoy worker: reserve, then settle.
//!
//! ## Storage
//! Counters live in proxy-wasm shared data, which Envoy keys by `vm_id`
//! (`token-counter` in our configs: every worker's VM of this filter sees the
//! same data). Each rule hashes a subject (the value of its key: a JWT `sub`,
//! a header, a client address) to one of `slots` keys
//! `token-counter/<rule>/<slot>`. A key holds up to [`ENTRIES_PER_SLOT`]
//! entries of 32 bytes: the subject's 64-bit fingerprint, the window it
//! counts, tokens used and tokens reserved by requests in flight.
//!
//! Memory is bounded: keys are reused window after window (an entry of a past
//! window is reset in place or handed to another subject), so a rule never
//! holds more than `slots` keys of at most 128 bytes, however many subjects
//! and windows pass. When more than four live subjects hash to one slot, the
//! fifth shares the budget of one of them (chosen by its fingerprint, so
//! always the same one): sharing can only reject early, never let a subject
//! past its own limit.
//!
//! ## Windows
//! Fixed windows aligned to the Unix epoch (minute, hour, or day from 00:00
//! UTC). `x-ratelimit-reset-tokens` is the time until the window ends. As with
//! any fixed window, a subject can spend its limit at the end of one window
//! and again at the start of the next.
//!
//! ## Concurrency
//! Every change is a compare-and-swap on one key, retried a bounded number of
//! times ([`aigw_shared::counter::update_with_cas`]). Admission checks
//! `used + reserved + request ≤ limit` and adds the reservation in the same
//! CAS, so requests that arrive together can never all pass on the same
//! budget. What remains is the difference between a reservation and the real
//! usage settled afterwards: see the README's overshoot bound.

use aigw_shared::counter::{update_with_cas, SharedStore, UpdateError, DEFAULT_CAS_RETRIES};

/// Entries one slot key holds before subjects start sharing.
pub const ENTRIES_PER_SLOT: usize = 4;
const ENTRY_BYTES: usize = 32;

/// Prefix of every shared-data key this filter writes.
pub const KEY_PREFIX: &str = "token-counter";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "minute" => Some(Window::Minute),
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
        }
    }

    /// The window `now` falls in.
    pub fn index(self, now_nanos: u64) -> u64 {
        now_nanos / 1_000_000_000 / self.seconds()
    }

    /// Milliseconds from `now` until the window ends.
    pub fn reset_millis(self, now_nanos: u64) -> u64 {
        let end_nanos = (self.index(now_nanos) + 1).saturating_mul(self.seconds()).saturating_mul(1_000_000_000);
        end_nanos.saturating_sub(now_nanos).div_ceil(1_000_000)
    }
}

/// Which tokens a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts {
    Input,
    Output,
    Total,
}

impl Counts {
    pub fn parse(text: &str) -> Option<Counts> {
        match text {
            "input" => Some(Counts::Input),
            "output" => Some(Counts::Output),
            "total" => Some(Counts::Total),
            _ => None,
        }
    }

    pub fn pick(self, input: u64, output: u64) -> u64 {
        match self {
            Counts::Input => input,
            Counts::Output => output,
            Counts::Total => input.saturating_add(output),
        }
    }
}

/// 64-bit FNV-1a: stable across VMs and builds, cheap, good enough to spread
/// subjects over slots (it is not a defence against chosen collisions; a
/// collision only makes two subjects share a budget).
pub fn fingerprint(rule: &str, subject: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rule.bytes().chain(std::iter::once(0)).chain(subject.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Never 0: an all-zero entry reads as free.
    hash.max(1)
}

/// The shared-data key of a subject's slot.
pub fn slot_key(rule: &str, fingerprint: u64, slots: u32) -> String {
    slot_key_at(rule, fingerprint % u64::from(slots.max(1)))
}

fn slot_key_at(rule: &str, slot: u64) -> String {
    format!("{KEY_PREFIX}/{rule}/{slot}")
}

/// Creates every slot key of a rule that does not exist yet, holding an empty
/// entry. Returns how many it created.
///
/// Proxy-wasm shared data has no conditional create: a write to an absent key
/// succeeds whatever CAS it carries, so two workers making a key's first
/// write at the same instant could overwrite each other's reservation. Every
/// VM therefore creates the rule's whole fixed key set at configure time,
/// before Envoy's listeners take traffic; from then on every change is a real
/// compare-and-swap. (Two VMs creating the same key both write the same empty
/// value, which loses nothing.)
pub fn create_slots<S: SharedStore + ?Sized>(store: &S, rule: &str, slots: u32) -> usize {
    let empty = encode(&[Entry::default()]);
    let mut created = 0;
    for slot in 0..u64::from(slots) {
        let key = slot_key_at(rule, slot);
        let (value, cas) = store.get(&key);
        if value.is_none() && cas.is_none() && store.set(&key, &empty, None).is_ok() {
            created += 1;
        }
    }
    created
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    pub fingerprint: u64,
    pub window: u64,
    pub used: u64,
    pub reserved: u64,
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Decodes a slot value; bytes that do not form whole entries are ignored.
pub fn decode(bytes: Option<&[u8]>) -> Vec<Entry> {
    let Some(bytes) = bytes else { return Vec::new() };
    bytes
        .chunks_exact(ENTRY_BYTES)
        .take(ENTRIES_PER_SLOT)
        .map(|chunk| Entry {
            fingerprint: read_u64(chunk, 0),
            window: read_u64(chunk, 8),
            used: read_u64(chunk, 16),
            reserved: read_u64(chunk, 24),
        })
        .filter(|entry| entry.fingerprint != 0)
        .collect()
}

pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for entry in entries {
        for value in [entry.fingerprint, entry.window, entry.used, entry.reserved] {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

/// Finds (or makes room for) the entry of `fingerprint` in the current
/// window, resetting it if it counted an older window. Returns its index and
/// whether the subject shares another subject's entry.
fn locate(entries: &mut Vec<Entry>, fingerprint: u64, window: u64) -> (usize, bool) {
    let fresh = Entry { fingerprint, window, used: 0, reserved: 0 };
    if let Some(index) = entries.iter().position(|entry| entry.fingerprint == fingerprint) {
        if let Some(entry) = entries.get_mut(index) {
            if entry.window != window {
                *entry = fresh;
            }
        }
        return (index, false);
    }
    if let Some(index) = entries.iter().position(|entry| entry.window != window) {
        if let Some(entry) = entries.get_mut(index) {
            *entry = fresh;
        }
        return (index, false);
    }
    if entries.len() < ENTRIES_PER_SLOT {
        entries.push(fresh);
        return (entries.len() - 1, false);
    }
    // Every entry is live and belongs to someone else: share one, always the
    // same for this subject.
    let index = usize::try_from(fingerprint % ENTRIES_PER_SLOT as u64).unwrap_or(0);
    (index.min(entries.len().saturating_sub(1)), true)
}

/// The counter state a decision was made on, for headers and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub limit: u64,
    /// Used plus reserved, including this request's reservation if admitted.
    pub consumed: u64,
    pub window: u64,
    pub shared: bool,
}

impl Snapshot {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.consumed)
    }
}

/// Outcome of [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved `amount` in `window`.
    Admitted { amount: u64, snapshot: Snapshot },
    /// Admitting would pass the limit; nothing was written.
    Exceeded { amount: u64, snapshot: Snapshot },
    /// The store failed or stayed contended: nothing reserved.
    StoreError,
}

/// Reserves `amount` tokens for `fingerprint` under `limit` in `window`. With
/// `force`, the reservation is made even past the limit (for `signal` rules,
/// whose requests go through anyway); the result still says `Exceeded`.
pub fn reserve<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    fingerprint: u64,
    window: u64,
    limit: u64,
    amount: u64,
    force: bool,
) -> Reservation {
    let mut outcome = None;
    let result = update_with_cas(store, key, DEFAULT_CAS_RETRIES, |current| {
        let mut entries = decode(current);
        let (index, shared) = locate(&mut entries, fingerprint, window);
        let Some(entry) = entries.get_mut(index) else { return Err(()) };
        let before = entry.used.saturating_add(entry.reserved);
        let after = before.saturating_add(amount);
        let over = after > limit;
        if over && !force {
            outcome =
                Some(Reservation::Exceeded { amount, snapshot: Snapshot { limit, consumed: before, window, shared } });
            return Err(());
        }
        entry.reserved = entry.reserved.saturating_add(amount);
        let snapshot = Snapshot { limit, consumed: after, window, shared };
        outcome = Some(if over {
            Reservation::Exceeded { amount, snapshot }
        } else {
            Reservation::Admitted { amount, snapshot }
        });
        Ok(encode(&entries))
    });
    match (result, outcome) {
        (Ok(_), Some(outcome)) => outcome,
        (Err(UpdateError::Rejected(())), Some(outcome @ Reservation::Exceeded { .. })) => outcome,
        _ => Reservation::StoreError,
    }
}

/// Replaces a reservation made in `reserved_window` by the real usage. If the
/// window has rolled over since, the old reservation is gone with it and the
/// usage is charged to the current window. `actual = 0` releases. `None`
/// when the store failed or stayed contended.
#[allow(clippy::too_many_arguments)]
pub fn settle<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
    fingerprint: u64,
    reserved_window: u64,
    current_window: u64,
    reserved: u64,
    actual: u64,
) -> Option<Snapshot> {
    let mut snapshot = None;
    let result = update_with_cas(store, key, DEFAULT_CAS_RETRIES, |current| {
        let mut entries = decode(current);
        let (index, shared) = locate(&mut entries, fingerprint, current_window);
        let Some(entry) = entries.get_mut(index) else { return Err(()) };
        if current_window == reserved_window {
            entry.reserved = entry.reserved.saturating_sub(reserved);
        }
        entry.used = entry.used.saturating_add(actual);
        snapshot = Some(Snapshot {
            limit: 0,
            consumed: entry.used.saturating_add(entry.reserved),
            window: current_window,
            shared,
        });
        Ok(encode(&entries))
    });
    match (result, snapshot) {
        (Ok(_), Some(snapshot)) => Some(snapshot),
        _ => None,
    }
}

/// Reads a subject's state without changing it.
pub fn peek<S: SharedStore + ?Sized>(store: &S, key: &str, fingerprint: u64, window: u64) -> Entry {
    let (bytes, _) = store.get(key);
    let mut entries = decode(bytes.as_deref());
    let (index, _) = locate(&mut entries, fingerprint, window);
    entries.get(index).copied().unwrap_or_default()
}

/// Formats a duration the way OpenAI's `x-ratelimit-reset-tokens` does (Go's
/// duration format): `6m0s`, `1h2m3s`, `1.5s`, `250ms`.
pub fn format_reset(millis: u64) -> String {
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let hours = millis / 3_600_000;
    let minutes = (millis / 60_000) % 60;
    let seconds = (millis / 1000) % 60;
    let fraction = millis % 1000;
    let mut seconds_text = seconds.to_string();
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        seconds_text.push('.');
        seconds_text.push_str(digits.trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds_text}s")
    } else {
        format!("{seconds_text}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::counter::memory::MemoryStore;

    const SEC: u64 = 1_000_000_000;

    fn admitted(r: Reservation) -> Snapshot {
        match r {
            Reservation::Admitted { snapshot, .. } => snapshot,
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn reserve_settle_release() {
        let store = MemoryStore::new();
        let fp = fingerprint("r", "alice");
        let key = slot_key("r", fp, 16);
        let s = admitted(reserve(&store, &key, fp, 7, 500, 300, false));
        assert_eq!((s.consumed, s.remaining()), (300, 200));
        // A second request of 300 would pass the limit: refused, nothing written.
        assert!(matches!(reserve(&store, &key, fp, 7, 500, 300, false), Reservation::Exceeded { .. }));
        assert_eq!(peek(&store, &key, fp, 7), Entry { fingerprint: fp, window: 7, used: 0, reserved: 300 });
        // Settle to the real usage (120): the other 180 come back.
        settle(&store, &key, fp, 7, 7, 300, 120).unwrap();
        assert_eq!(peek(&store, &key, fp, 7), Entry { fingerprint: fp, window: 7, used: 120, reserved: 0 });
        let s = admitted(reserve(&store, &key, fp, 7, 500, 300, false));
        assert_eq!(s.remaining(), 80);
        // A failed request releases everything it reserved.
        settle(&store, &key, fp, 7, 7, 300, 0).unwrap();
        assert_eq!(peek(&store, &key, fp, 7).reserved, 0);
        assert_eq!(peek(&store, &key, fp, 7).used, 120);
    }

    #[test]
    fn windows_roll_over_in_place() {
        let store = MemoryStore::new();
        let fp = fingerprint("r", "alice");
        let key = slot_key("r", fp, 16);
        admitted(reserve(&store, &key, fp, 1, 100, 100, false));
        settle(&store, &key, fp, 1, 1, 100, 100).unwrap();
        assert!(matches!(reserve(&store, &key, fp, 1, 100, 1, false), Reservation::Exceeded { .. }));
        // Next window: a fresh budget in the same key.
        let s = admitted(reserve(&store, &key, fp, 2, 100, 40, false));
        assert_eq!(s.remaining(), 60);
        assert_eq!(store.len(), 1);
        // A reservation from window 2 settled in window 3 charges window 3 only.
        settle(&store, &key, fp, 2, 3, 40, 30).unwrap();
        assert_eq!(peek(&store, &key, fp, 3), Entry { fingerprint: fp, window: 3, used: 30, reserved: 0 });
    }

    #[test]
    fn slots_are_created_once_and_then_compare_and_swapped() {
        let store = MemoryStore::new();
        assert_eq!(create_slots(&store, "r", 16), 16);
        assert_eq!(create_slots(&store, "r", 16), 0, "a second VM finds them all");
        assert_eq!(store.len(), 16);
        let key = slot_key("r", fingerprint("r", "alice"), 16);
        let (value, cas) = store.get(&key);
        assert!(decode(value.as_deref()).is_empty(), "the empty entry reads as free");
        assert!(cas.is_some(), "so the first reservation is a real compare-and-swap");
    }

    #[test]
    fn keys_stay_bounded() {
        let store = MemoryStore::new();
        for window in 0..50 {
            for subject in 0..1000 {
                let fp = fingerprint("r", &format!("user-{subject}"));
                let key = slot_key("r", fp, 64);
                reserve(&store, &key, fp, window, 1_000_000, 1, false);
            }
        }
        assert!(store.len() <= 64, "{}", store.len());
        for key in 0..64 {
            let (bytes, _) = store.get(&format!("{KEY_PREFIX}/r/{key}"));
            assert!(bytes.map_or(0, |b| b.len()) <= ENTRIES_PER_SLOT * ENTRY_BYTES);
        }
    }

    #[test]
    fn crowded_slots_share_without_letting_anyone_past_the_limit() {
        let store = MemoryStore::new();
        // One slot: the fifth subject onwards share an entry.
        let mut admitted_total = 0;
        for subject in 0..10 {
            let fp = fingerprint("r", &format!("s{subject}"));
            let key = slot_key("r", fp, 1);
            for _ in 0..5 {
                if let Reservation::Admitted { amount, .. } = reserve(&store, &key, fp, 0, 100, 30, false) {
                    admitted_total += amount;
                }
            }
        }
        // Four entries × at most 90 each (3 × 30 ≤ 100).
        assert!(admitted_total <= 4 * 90, "{admitted_total}");
        let shared = fingerprint("r", "s9");
        assert!(matches!(
            reserve(&store, &slot_key("r", shared, 1), shared, 0, 100, 30, false),
            Reservation::Exceeded { snapshot: Snapshot { shared: true, .. }, .. }
        ));
    }

    #[test]
    fn forced_reservations_pass_but_report_exceeded() {
        let store = MemoryStore::new();
        let fp = fingerprint("r", "a");
        let key = slot_key("r", fp, 4);
        match reserve(&store, &key, fp, 0, 10, 25, true) {
            Reservation::Exceeded { snapshot, .. } => assert_eq!(snapshot.consumed, 25),
            other => panic!("{other:?}"),
        }
        assert_eq!(peek(&store, &key, fp, 0).reserved, 25);
    }

    #[test]
    fn contention_is_bounded() {
        let store = MemoryStore::new();
        store.force_conflicts(100);
        assert_eq!(reserve(&store, "k", 1, 0, 10, 1, false), Reservation::StoreError);
        let store = MemoryStore::new();
        store.force_conflicts(3);
        assert!(matches!(reserve(&store, "k", 1, 0, 10, 1, false), Reservation::Admitted { .. }));
    }

    #[test]
    fn windows_and_reset_format() {
        assert_eq!(Window::Hour.index(3599 * SEC), 0);
        assert_eq!(Window::Hour.index(3600 * SEC), 1);
        assert_eq!(Window::Minute.reset_millis(61 * SEC + 500_000_000), 58_500);
        assert_eq!(Window::Day.reset_millis(0), 86_400_000);
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(1500), "1.5s");
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
        assert_eq!(format_reset(58_500), "58.5s");
        assert_eq!(format_reset(1_020), "1.02s");
    }

    #[test]
    fn garbage_in_shared_data_reads_as_empty() {
        assert!(decode(Some(b"short")).is_empty());
        assert!(decode(Some(&[0u8; 64])).is_empty());
        assert_eq!(decode(Some(&[1u8; 32 * 9])).len(), ENTRIES_PER_SLOT);
    }
}
