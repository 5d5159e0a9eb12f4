//! The eBPF CPU sampler against the kernel's own accounting, on both hierarchies of this
//! hybrid host. Real programs, real cgroups, real load.

use std::time::Duration;

use enforcer::sampling::cpu::CpuSampler;
use enforcer_common::CgroupMode;
use enforcer_tests::{
    cgroup::{TestCgroup, cpu_hog, spawn_in},
    require_root, unique_name,
};

fn within(actual: u64, expected: u64, tolerance: f64) -> bool {
    (actual as f64 - expected as f64).abs() <= expected as f64 * tolerance
}

/// Runs a 3 s hog in `cgroups`, checks the sampler mid-run (the in-flight slice must be
/// counted: a lone hog is rarely switched out) and at the end, against `kernel_ns`.
fn check_against_kernel(
    mode: CgroupMode,
    charged: &TestCgroup,
    cgroups: &[&TestCgroup],
    kernel_ns: impl Fn() -> u64,
) {
    let mut sampler = CpuSampler::load(mode, 16_384).expect("load CPU sampler");
    let mut hog = spawn_in(cgroups, cpu_hog(3.0));

    std::thread::sleep(Duration::from_millis(1500));
    let ebpf_mid = sampler
        .read()
        .unwrap()
        .per_cgroup
        .get(&charged.id())
        .copied();
    let kernel_mid = kernel_ns();
    let ebpf_mid = ebpf_mid.expect("the running hog's cgroup is in the map");
    assert!(
        within(ebpf_mid, kernel_mid, 0.05),
        "mid-run: eBPF {ebpf_mid} ns vs kernel {kernel_mid} ns"
    );

    hog.wait_timeout(Duration::from_secs(10))
        .expect("hog exits");
    let ebpf = sampler.read().unwrap().per_cgroup[&charged.id()];
    let kernel = kernel_ns();
    assert!(kernel > 2_500_000_000, "the hog ran: {kernel} ns");
    // Settled slices are the scheduler's own runtime, so the end figure is exact up to the
    // part of a slice charged across the move into the cgroup (under one tick); 1% is what
    // billing asks for. The wall clock would count steal time, which alone is more than 1%
    // on a busy VM.
    assert!(
        within(ebpf, kernel, 0.01),
        "eBPF {ebpf} ns vs kernel {kernel} ns"
    );
    eprintln!("{mode:?}: eBPF {ebpf} ns, kernel {kernel} ns");
}

#[test]
fn cgroup2_time_matches_cpu_stat() {
    require_root();
    let cg = TestCgroup::create("unified", &unique_name("enf-cpu2"));
    check_against_kernel(CgroupMode::Unified, &cg, &[&cg], || cg.cpu_stat_usage_ns());
}

#[test]
fn v1_cpu_time_matches_cpuacct_usage() {
    require_root();
    // On this host cpu and cpuacct are separate v1 hierarchies: the sampler charges the cpu
    // cgroup, the kernel accounts in the cpuacct twin.
    let name = unique_name("enf-cpu1");
    let cpu = TestCgroup::create("cpu", &name);
    let acct = TestCgroup::create("cpuacct", &name);
    check_against_kernel(CgroupMode::V1Cpu, &cpu, &[&cpu, &acct], || {
        acct.cpuacct_usage_ns()
    });
}

#[test]
fn idle_time_is_not_charged_and_busy_time_tracks_the_node() {
    require_root();
    let mut sampler = CpuSampler::load(CgroupMode::Unified, 16_384).expect("load CPU sampler");
    let first = sampler.read().unwrap();
    let cg = TestCgroup::create("unified", &unique_name("enf-busy"));
    let mut hog = spawn_in(&[&cg], cpu_hog(1.0));
    hog.wait_timeout(Duration::from_secs(10))
        .expect("hog exits");
    let second = sampler.read().unwrap();
    let busy = second.busy_ns - first.busy_ns;
    let elapsed = second.at_ns - first.at_ns;
    let cpus = aya::util::online_cpus().unwrap().len() as u64;
    // At least the hog's second, never more than all CPUs for the whole interval: idle
    // (pid 0) is not charged.
    assert!(busy >= 900_000_000, "busy {busy} ns");
    assert!(
        busy <= elapsed * cpus,
        "busy {busy} ns > {elapsed} ns x {cpus} CPUs"
    );
    assert!(second.switches > first.switches);
    assert_eq!(second.read_errors, 0);
    assert_eq!(second.dropped, 0);
}

/// Two hogs in two cgroups pinned to one CPU: each runs about half the time, preempted
/// every few milliseconds. Each cgroup is charged what the kernel charges it, not the wall
/// time of the other's slices, nor the steal or IRQ time inside its own.
#[test]
fn preempted_hogs_on_one_cpu_are_each_charged_their_own_time() {
    require_root();
    let mut sampler = CpuSampler::load(CgroupMode::Unified, 16_384).expect("load CPU sampler");
    let cgroups: Vec<TestCgroup> = (0..2)
        .map(|i| TestCgroup::create("unified", &unique_name(&format!("enf-pin{i}"))))
        .collect();
    let cpu = aya::util::online_cpus().unwrap()[0];
    let mut hogs: Vec<_> = cgroups
        .iter()
        .map(|cg| {
            let mut pinned = std::process::Command::new("taskset");
            pinned.args([
                "-c",
                &cpu.to_string(),
                "timeout",
                "3",
                "sh",
                "-c",
                "while :; do :; done",
            ]);
            spawn_in(&[cg], pinned)
        })
        .collect();
    for hog in &mut hogs {
        hog.wait_timeout(Duration::from_secs(10))
            .expect("hog exits");
    }
    let reading = sampler.read().unwrap();
    let mut total = 0;
    for cg in &cgroups {
        let kernel = cg.cpu_stat_usage_ns();
        let ebpf = reading.per_cgroup.get(&cg.id()).copied().unwrap_or(0);
        eprintln!("{}: eBPF {ebpf} ns, kernel {kernel} ns", cg.id());
        // Sharing one CPU for 3 s: each got a real share, neither all of it.
        assert!(
            (500_000_000..2_900_000_000).contains(&kernel),
            "hog in {} ran {kernel} ns on a shared CPU",
            cg.id()
        );
        assert!(
            within(ebpf, kernel, 0.01),
            "eBPF {ebpf} ns vs kernel {kernel} ns"
        );
        total += kernel;
    }
    assert!(
        total <= 3_100_000_000,
        "two hogs on one CPU for 3 s ran {total} ns"
    );
}
