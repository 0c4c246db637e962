//! What the tools (`simpang bench`, `simpang eval`) read about the machine and the processes
//! they measure, all in one place: CPU time of a process and of its threads, peak RSS, the
//! machine's CPU model, flags and load, from `/proc`; and this process's CPU time to the
//! microsecond (for per-inference figures, finer than `/proc`'s clock ticks).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (comm, utime + stime in seconds) from a `stat` file's text. The command name is in
/// parentheses and may itself contain spaces and parentheses: fields are counted after the last
/// `)`.
fn parse_stat(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the comm: state is field 3 (index 0 here); utime and stime are fields 14 and 15.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks_per_second()))
}

/// CPU time (user + system, all threads) of process `pid`, or of this process for `None`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat(&text).map(|(_, s)| s)
}

/// CPU time (user + system, all threads) of this process so far, to the microsecond
/// (`getrusage`); zero if the call fails.
pub fn self_cpu_time() -> std::time::Duration {
    use std::time::Duration;
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Peak resident set size in bytes (`VmHWM`) of process `pid`, or of this process.
pub fn peak_rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    status_kb(&text, "VmHWM:").map(|kb| kb * 1024)
}

fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU seconds of every live thread of this process, by thread id: (name, seconds).
pub fn thread_cpu() -> BTreeMap<u32, (String, f64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.insert(tid, stat);
        }
    }
    out
}

/// The CPU and load of the machine a figure was taken on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    /// True when the CPU reports `avx512f`.
    pub avx512: bool,
    /// The AVX-512 (and AMX) feature flags it reports.
    pub avx512_flags: Vec<String>,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine::from_cpuinfo(
            &cpuinfo,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        )
    }

    fn from_cpuinfo(cpuinfo: &str, cpus: usize, kernel: String) -> Machine {
        let field = |key: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let avx512_flags: Vec<String> = flags
            .split_whitespace()
            .filter(|f| f.starts_with("avx512") || f.starts_with("amx"))
            .map(str::to_string)
            .collect();
        Machine {
            cpu_model: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            cpus,
            avx512: avx512_flags.iter().any(|f| f == "avx512f"),
            avx512_flags,
            kernel,
        }
    }
}

/// Busy CPU seconds of the whole machine, all cores (user, nice, system, irq, softirq and steal
/// of the `cpu` line of `/proc/stat`): with this process's own CPU time over the same window it
/// tells how much else ran on the machine during a measurement.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    busy_of_stat(&text).map(|t| t / ticks_per_second())
}

fn busy_of_stat(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    (v.len() >= 4).then(|| at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// The 1-minute load average, if `/proc/loadavg` can be read.
pub fn load_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// True when `/proc` has this process (not on other systems).
pub fn available() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let ticks = ticks_per_second();
        let line = "1234 (cam-a (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 200 300";
        let (comm, cpu) = parse_stat(line).unwrap();
        assert_eq!(comm, "cam-a (x) y");
        assert!((cpu - 300.0 / ticks).abs() < 1e-9);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn own_process_figures() {
        assert!(available());
        assert!(cpu_seconds(None).unwrap() >= 0.0);
        assert!(peak_rss_bytes(None).unwrap() > 1024 * 1024);
        assert!(cpu_seconds(Some(std::process::id())).is_some());
        let threads = thread_cpu();
        assert!(!threads.is_empty());
        assert!(cpu_seconds(Some(u32::MAX)).is_none());
        assert!(load_1m().is_some_and(|l| l >= 0.0));
        // Burn a little CPU: the microsecond clock must see it.
        let c0 = self_cpu_time();
        let mut x = 0u64;
        while self_cpu_time() == c0 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(self_cpu_time() > c0);
    }

    #[test]
    fn cpuinfo_flags() {
        let m = Machine::from_cpuinfo(
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512bw amx_tile\n",
            2,
            "6.1".into(),
        );
        assert_eq!(m.cpu_model, "Intel(R) Xeon(R) Processor");
        assert!(m.avx512);
        assert_eq!(m.avx512_flags, vec!["avx512f", "avx512bw", "amx_tile"]);
        let m = Machine::from_cpuinfo("model name : AMD EPYC\nflags : avx2 fma\n", 2, "".into());
        assert!(!m.avx512);
        assert!(m.avx512_flags.is_empty());
        assert_eq!(
            status_kb("VmPeak:\t 10 kB\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
    }
}
