//! `Btf::parse` and the lookups `Programs::load` makes on it: the offsets the CPU sampler
//! walks (`task_offsets`, both modes) and the memory subsystem's slot in `css_set`. The
//! blob is the kernel's own, but a wrong one must stop the daemon with an error, not a
//! crash (or, worse, hand the kernel program a wrapped offset).
//!
//! Beyond "no panic": every error is one line naming the blob; the offsets the loader gets
//! agree with the lookups they are made of.

#![no_main]

use enforcer::sampling::btf::{Btf, BtfError};
use enforcer_common::CgroupMode;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "/sys/kernel/btf/vmlinux";

fn is_one_line(e: &BtfError) {
    let e = e.to_string();
    assert!(!e.contains('\n'), "{e:?}");
    assert!(e.starts_with(&format!("{ORIGIN}: ")), "{e}");
}

fuzz_target!(|data: &[u8]| {
    let btf = match Btf::parse(data, ORIGIN) {
        Ok(btf) => btf,
        Err(e) => return is_one_line(&e),
    };
    for mode in [CgroupMode::V1Cpu, CgroupMode::Unified] {
        match btf.task_offsets(mode) {
            Ok(o) => {
                assert_eq!(o.mode, mode as u32);
                assert_eq!(
                    btf.member_offset("task_struct", "pid").ok(),
                    Some(o.task_pid)
                );
                let subsys = btf.member_offset("css_set", "subsys").unwrap();
                assert!(o.css_set_cpu_subsys >= subsys, "{o:?}");
            }
            Err(e) => is_one_line(&e),
        }
    }
    match btf.css_set_subsys_offset("memory_cgrp_id") {
        Ok(offset) => {
            let id = btf
                .enum_value("cgroup_subsys_id", "memory_cgrp_id")
                .unwrap();
            let subsys = btf.member_offset("css_set", "subsys").unwrap();
            assert_eq!(i64::from(offset), i64::from(subsys) + id * 8);
        }
        Err(e) => is_one_line(&e),
    }
});
