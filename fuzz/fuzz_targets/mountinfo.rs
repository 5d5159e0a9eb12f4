//! `CgroupLayout::from_mountinfo`: the mount table, read once at start-up to find the
//! cgroup hierarchies (a container runtime or an operator's bind mount puts what it likes
//! there).
//!
//! Beyond "no panic": a layout is consistent with itself (its mode with its mounts, no
//! hierarchy twice, every mount point an absolute path without NUL, the CPU hierarchy one
//! of them); an error is one line.

#![no_main]

use enforcer::model::layout::{CgroupLayout, CpuHierarchy, LayoutMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // discover() reads the file as UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match CgroupLayout::from_mountinfo(text) {
        Ok(l) => {
            let expected = match (l.v1.is_empty(), l.unified.is_some()) {
                (true, true) => LayoutMode::V2,
                (false, false) => LayoutMode::V1,
                (false, true) => LayoutMode::Hybrid,
                (true, false) => panic!("a layout without a hierarchy: {l:?}"),
            };
            assert_eq!(l.mode, expected);
            let is_path = |p: &std::path::Path| {
                p.is_absolute() && !p.as_os_str().as_encoded_bytes().contains(&0)
            };
            for (i, h) in l.v1.iter().enumerate() {
                assert!(is_path(&h.mount_point), "{h:?}");
                assert!(
                    !l.v1[..i]
                        .iter()
                        .any(|o| o.controllers == h.controllers && o.name == h.name),
                    "hierarchy twice: {l:?}"
                );
            }
            if let Some(u) = &l.unified {
                assert!(is_path(u), "{u:?}");
            }
            match l.cpu_hierarchy() {
                Some(CpuHierarchy::Unified(p)) => assert_eq!(Some(&p), l.unified.as_ref()),
                Some(CpuHierarchy::V1 { cpu, .. }) => {
                    assert!(l.v1.iter().any(|h| h.mount_point == cpu))
                }
                None => {}
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains('\n'), "{e:?}");
        }
    }
});
