//! The kernel's OOM kills as it logs them (`/dev/kmsg`): the memory cgroup of every task
//! the OOM killer killed. cgroup2's `memory.events` counts a pod's kills hierarchically, but
//! v1's `memory.oom_control` counts only the cgroup's own, and a container's cgroup is
//! removed right after its task died: the kernel's log line is the one record that names
//! the cgroup on every layout.
//!
//! The line (since 4.19): `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,
//! mems_allowed=0,oom_memcg=/a/b,task_memcg=/a/b/c,task=sh,pid=24680,uid=0`.

use std::{
    fs::File,
    io::{ErrorKind, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

/// `/dev/kmsg` opened at its end: only kills from now on are read.
pub struct OomWatch {
    file: File,
    buf: Vec<u8>,
}

impl OomWatch {
    pub fn open(path: &Path) -> std::io::Result<OomWatch> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(OomWatch {
            file,
            buf: vec![0; 8192],
        })
    }

    /// The memory cgroups (as the kernel names them, from the hierarchy's root) of the
    /// tasks killed since the last call. Never blocks.
    pub fn kills(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        // Bounded: a storm of log lines costs at most this many reads a call.
        for _ in 0..10_000 {
            match self.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(cgroup) = std::str::from_utf8(&self.buf[..n])
                        .ok()
                        .and_then(oom_kill_cgroup)
                    {
                        out.push(cgroup.to_string());
                    }
                }
                // Records overwritten before we read them: the next read goes on.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// The `task_memcg` of an `oom-kill:` record (`prefix;message`), `None` for any other.
pub fn oom_kill_cgroup(record: &str) -> Option<&str> {
    let (_, message) = record.split_once(';')?;
    let fields = message.lines().next()?.strip_prefix("oom-kill:")?;
    fields
        .split(',')
        .find_map(|f| f.strip_prefix("task_memcg="))
        .filter(|p| p.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_killed_tasks_cgroup_of_an_oom_kill_record() {
        let record = "6,1234,5678901,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/besteffort/podX/c1,task_memcg=/kubepods/besteffort/podX/c1,task=sh,pid=24680,uid=0\n";
        assert_eq!(
            oom_kill_cgroup(record),
            Some("/kubepods/besteffort/podX/c1")
        );
        // A continuation line (` SUBSYSTEM=`) after the message changes nothing.
        let with_dict = format!("{record} SUBSYSTEM=memory\n");
        assert_eq!(
            oom_kill_cgroup(&with_dict),
            Some("/kubepods/besteffort/podX/c1")
        );
    }

    #[test]
    fn other_records_and_garbage_are_none() {
        for record in [
            "",
            ";",
            "6,1,2,-;Out of memory: Killed process 1 (sh)",
            "6,1,2,-;oom-kill:constraint=CONSTRAINT_NONE,task=sh,pid=1",
            "6,1,2,-;oom-kill:task_memcg=relative/path",
            "oom-kill:task_memcg=/no/prefix",
            "6,1,2,-;xoom-kill:task_memcg=/a",
        ] {
            assert_eq!(oom_kill_cgroup(record), None, "{record:?}");
        }
    }
}
