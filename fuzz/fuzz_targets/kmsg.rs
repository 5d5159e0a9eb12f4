//! `sampling::kmsg::oom_kill_cgroup`: one record of the kernel's log (`/dev/kmsg`), where
//! any driver or module writes what it likes.
//!
//! Beyond "no panic": a cgroup found is an absolute path that is a part of the record's
//! `task_memcg=` field, with no comma or newline in it.

#![no_main]

use enforcer::sampling::kmsg::oom_kill_cgroup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(cgroup) = oom_kill_cgroup(record) {
        assert!(cgroup.starts_with('/'), "{cgroup:?}");
        assert!(
            !cgroup.contains(',') && !cgroup.contains('\n'),
            "{cgroup:?}"
        );
        assert!(
            record.contains(&format!("task_memcg={cgroup}")),
            "{record:?}"
        );
    }
});
