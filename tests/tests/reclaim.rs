//! The reclaim programs against real memory pressure: a bounded allocator in a small v1
//! memory cgroup (a child of the test's own memory cgroup, as the host requires).

use std::{process::Command, time::Duration};

use enforcer::sampling::programs::{ProgramOptions, Programs};
use enforcer_common::{CgroupMode, PROGS_RECLAIM};
use enforcer_tests::{
    cgroup::{TestCgroup, own_cgroup_dir, spawn_in},
    load::memcg_squeeze,
    require_root, unique_name,
};

fn load() -> Programs {
    Programs::load(&ProgramOptions {
        cpu_mode: CgroupMode::V1Cpu,
        // On this hybrid host memory is a v1 controller.
        memory_mode: CgroupMode::V1Cpu,
        cgroup_map_entries: 16_384,
        network: None,
    })
    .expect("load programs")
}

#[test]
fn memcg_reclaim_is_attributed_to_the_cgroup_under_pressure() {
    require_root();
    let mut programs = load();
    let mut reclaim = programs.reclaim_sampler().unwrap();
    let own = own_cgroup_dir("memory");
    let squeezed = TestCgroup::create_at(&own, &unique_name("enf-reclaim"));
    let calm = TestCgroup::create_at(&own, &unique_name("enf-calm"));
    // 48 MiB of anonymous memory into a 32 MiB cgroup, for 3 seconds; a sleeper beside it.
    let mut a = memcg_squeeze(&squeezed, 32, 48, 3);
    let mut calm_work = Command::new("sleep");
    calm_work.arg("3");
    let mut b = spawn_in(&[&calm], calm_work);
    a.wait_timeout(Duration::from_secs(15))
        .expect("stress-ng exits");
    b.wait_timeout(Duration::from_secs(15))
        .expect("sleep exits");

    let reading = reclaim.read().unwrap();
    let stats = reading
        .per_cgroup
        .get(&squeezed.id())
        .copied()
        .unwrap_or_else(|| panic!("no reclaim for the squeezed cgroup: {reading:?}"));
    assert!(stats.memcg_episodes > 10, "{stats:?}");
    assert!(stats.memcg_stall_ns > 0, "{stats:?}");
    assert!(
        !reading.per_cgroup.contains_key(&calm.id()),
        "the calm cgroup shows reclaim"
    );
    eprintln!("memcg reclaim: {stats:?}");
}

#[test]
fn direct_reclaim_and_kswapd_programs_are_loaded_and_attached() {
    require_root();
    // Global direct reclaim cannot be provoked safely on a shared test machine; check the
    // programs are loaded, attached to the right tracepoints, and readable.
    let mut programs = load();
    let mut reclaim = programs.reclaim_sampler().unwrap();
    reclaim.read().expect("maps readable");
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let attached: Vec<String> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            l["attach_btf_name"]
                .as_str()
                .or(l["tp_name"].as_str())
                .map(String::from)
        })
        .collect();
    for name in PROGS_RECLAIM {
        assert!(
            attached.iter().any(|a| a.ends_with(name)),
            "{name} not attached; links: {attached:?}"
        );
    }
    drop(programs);
}
