//! Process figures from /proc (Linux): CPU time, resident memory, the Wasm
//! linear memories inside Envoy's V8, and CPU pinning.

use serde::Serialize;
use std::time::Duration;

/// utime + stime of a whole process (all threads), from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15 (1-based) → indices 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks as f64))
}

#[allow(unsafe_code)]
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// One Wasm linear memory inside a V8 process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WasmMemory {
    /// Current memory size (pages × 64 KiB), KiB.
    pub size_kib: u64,
    /// Pages of it actually resident, KiB.
    pub rss_kib: u64,
}

/// V8 reserves 8 GiB of address space for each 64-bit-guarded Wasm memory
/// and makes the first `memory.size` bytes read-write; the rest stays
/// PROT_NONE. In /proc/<pid>/smaps that is an `rw-p` mapping directly
/// followed by a `---p` mapping, together exactly 8 GiB. Each such pair is
/// one Wasm instance's linear memory.
pub fn wasm_memories(pid: u32) -> Vec<WasmMemory> {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return Vec::new() };
    parse_wasm_memories(&smaps)
}

const WASM_RESERVATION_KIB: u64 = 8 * 1024 * 1024;

fn parse_wasm_memories(smaps: &str) -> Vec<WasmMemory> {
    struct Map {
        start: u64,
        end: u64,
        perms: String,
        size_kib: u64,
        rss_kib: u64,
    }
    let mut maps: Vec<Map> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or_default().to_string();
                maps.push(Map { start, end, perms, size_kib: (end - start) / 1024, rss_kib: 0 });
                continue;
            }
        }
        if let (Some(rss), Some(map)) = (line.strip_prefix("Rss:"), maps.last_mut()) {
            map.rss_kib = rss.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    maps.windows(2)
        .filter_map(|pair| match pair {
            [rw, guard]
                if rw.perms == "rw-p"
                    && guard.perms == "---p"
                    && rw.end == guard.start
                    && rw.size_kib + guard.size_kib == WASM_RESERVATION_KIB =>
            {
                Some(WasmMemory { size_kib: rw.size_kib, rss_kib: rw.rss_kib })
            }
            _ => None,
        })
        .collect()
}

/// Pins every thread of a process to one CPU (threads it creates later inherit it).
#[allow(unsafe_code)]
pub fn pin_process(pid: u32, cpu: usize) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let mut all = true;
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
        all &= pin_thread(tid, cpu);
    }
    all
}

/// Pins one thread (`0` = the calling thread) to one CPU.
#[allow(unsafe_code)]
pub fn pin_thread(tid: i32, cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Makes `thread::sleep` in this thread (and threads it spawns later) wake
/// within ~1 µs instead of the default 50 µs timer slack.
#[allow(unsafe_code)]
pub fn tight_timer_slack() -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) == 0 }
}

/// Number of online CPUs (of the machine, not of this process's affinity mask).
#[allow(unsafe_code)]
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// `model name` from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v8_wasm_memories_in_smaps() {
        let smaps = "\
7f5a76150000-7f5a788a0000 rw-p 00000000 00:00 0
Size:              40256 kB
Rss:               39200 kB
7f5a788a0000-7f5c76150000 ---p 00000000 00:00 0
Size:            8348352 kB
Rss:                   0 kB
7f5c76150000-7f5c788a0000 rw-p 00000000 00:00 0
Size:              40256 kB
Rss:                 100 kB
7f5c788a0000-7f5c798a0000 ---p 00000000 00:00 0
Size:              16384 kB
Rss:                   0 kB
";
        assert_eq!(parse_wasm_memories(smaps), vec![WasmMemory { size_kib: 40256, rss_kib: 39200 }]);
    }

    #[test]
    fn own_process_figures() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
