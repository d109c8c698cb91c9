//! Reads a process's CPU time and resident memory from `/proc`.
//!
//! The server under test is another process; the generator only looks at it
//! through these two files and never signals or changes it.

use std::path::PathBuf;

use crate::error::BenchError;

/// Clock ticks per second of `utime` and `stime` (`USER_HZ`). Linux fixes it
/// at 100 for user space on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system, all threads) used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = read(&path)?;
    let (utime, stime) = parse_stat(&text).ok_or(BenchError::ProcFormat { path })?;
    Ok((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    parse_vm_rss(&text).ok_or(BenchError::ProcFormat { path })
}

fn read(path: &PathBuf) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|source| BenchError::Proc {
        path: path.clone(),
        source,
    })
}

/// `utime` and `stime` (fields 14 and 15). The command name (field 2) may
/// contain spaces and parentheses, so counting starts after its last `)`.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "4242 (tsockm (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 75)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("own status") > 0);
        assert!(cpu_seconds(pid).expect("own stat") >= 0.0);
    }
}
