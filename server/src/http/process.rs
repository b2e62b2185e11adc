//! This process and its disk as `/metrics` and the console show them: resident
//! memory, open files and CPU time from `/proc/self`, free space of the data dir.

/// Space on a file system.
#[derive(Debug, Clone, Copy)]
pub struct Disk {
    /// Bytes an unprivileged process may still write.
    pub free: u64,
    /// Size of the file system.
    pub total: u64,
}

impl Disk {
    /// Free space of the file system that holds `path`.
    pub fn of(path: &std::path::Path) -> Option<Disk> {
        let s = rustix::fs::statvfs(path).ok()?;
        Some(Disk {
            free: s.f_bavail.saturating_mul(s.f_frsize),
            total: s.f_blocks.saturating_mul(s.f_frsize),
        })
    }

    /// Free space in per cent of the whole.
    pub fn free_percent(&self) -> u64 {
        (self.free.saturating_mul(100))
            .checked_div(self.total)
            .unwrap_or(100)
    }
}

/// What the kernel says about this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// The kernel's clock tick for `/proc/<pid>/stat` times: 100 on every Linux
/// architecture Outpost runs on (`USER_HZ` is fixed by the ABI, whatever `HZ` is).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads `/proc/self`; `None` off Linux or when `/proc` is not mounted.
    pub fn read() -> Option<ProcessStats> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let mut s = parse(&status, &stat)?;
        s.open_fds = open_fds;
        Some(s)
    }
}

/// Parses `/proc/self/status` (VmRSS, Threads) and `/proc/self/stat` (utime and
/// stime, fields 14 and 15, counted after the parenthesised command name, which may
/// itself hold spaces and parentheses).
fn parse(status: &str, stat: &str) -> Option<ProcessStats> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let rss_kib = field("VmRSS:")?;
    let threads = field("Threads:").unwrap_or(0);
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcessStats {
        rss_bytes: rss_kib * 1024,
        open_fds: 0,
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let status = "Name:\toutpost\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        let stat =
            "1234 (out post) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100";
        let s = parse(status, stat).unwrap();
        assert_eq!(s.rss_bytes, 51200 * 1024);
        assert_eq!(s.threads, 7);
        assert!((s.cpu_seconds - 3.0).abs() < 1e-9, "{}", s.cpu_seconds);
        assert_eq!(parse("Name: x\n", stat), None, "no VmRSS");
        assert_eq!(parse(status, "garbage"), None);
    }

    #[test]
    fn this_process_reads() {
        let s = ProcessStats::read().expect("/proc is mounted on the test machine");
        assert!(s.rss_bytes > 1024 * 1024);
        assert!(s.open_fds >= 3);
        assert!(Disk::of(std::path::Path::new("/")).is_some_and(|d| d.total > 0));
    }
}
