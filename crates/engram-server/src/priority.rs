//! The CPU priority of a background role.
//!
//! Inside `engram serve` the embedding lanes put Recall and Remember ahead
//! of enrichment. When the roles run as separate processes on one node
//! (systemd units, one container, a VM), nothing inside one process can
//! tell another to wait, but the kernel can: `engram enrich` lowers its own
//! scheduling priority (its nice value) before it starts any thread, so
//! every thread it creates (the runtime's workers, ONNX Runtime's pool,
//! the optimizer's) inherits it and yields the cores to ingest and recall
//! whenever both want them, and uses them fully when they are idle.
//! Across Kubernetes pods the equivalent is the pods' CPU requests (cgroup
//! weights); niceness only orders threads within one cgroup.

use crate::ServerError;
use std::ops::RangeInclusive;

/// Nice values an unprivileged process may lower itself to.
pub(crate) const NICE: RangeInclusive<i32> = 0..=19;

/// Lowers the calling thread's priority to nice value `nice` (0–19); the
/// threads it starts afterwards inherit it. Call it before building the
/// runtime. A value at or below the current one changes nothing (raising
/// priority needs privileges, and is never what a background role wants).
pub fn lower_priority(nice: i32) -> Result<(), ServerError> {
    if !NICE.contains(&nice) {
        return Err(ServerError::Config(format!(
            "nice value {nice} is outside 0..=19"
        )));
    }
    // On Linux PRIO_PROCESS with pid 0 is the calling thread alone (each
    // thread has its own nice value); new threads copy their creator's.
    let current =
        rustix::process::getpriority_process(None).map_err(|e| ServerError::Priority(e.into()))?;
    if nice <= current {
        return Ok(());
    }
    rustix::process::setpriority_process(None, nice).map_err(|e| ServerError::Priority(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, as the kernel reports it.
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // Fields after the command name (which may hold spaces) start
        // after the last ')'; nice is field 19, the 17th after it.
        let (_, rest) = stat.rsplit_once(") ").expect("stat format");
        rest.split(' ')
            .nth(16)
            .expect("nice field")
            .parse()
            .expect("a number")
    }

    #[test]
    fn threads_started_after_inherit_the_lower_priority() {
        // In a thread of its own: the test harness's threads keep theirs.
        std::thread::spawn(|| {
            let before = nice_of_this_thread();
            let target = (before + 3).min(19);
            lower_priority(target).unwrap();
            assert_eq!(nice_of_this_thread(), target);
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap();
            assert_eq!(child, target, "a thread started afterwards inherits it");
            // Asking for a higher priority than the current one is a no-op.
            lower_priority(before).unwrap();
            assert_eq!(nice_of_this_thread(), target);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn values_outside_the_unprivileged_range_are_refused() {
        assert!(lower_priority(-1).is_err());
        assert!(lower_priority(20).is_err());
    }
}
