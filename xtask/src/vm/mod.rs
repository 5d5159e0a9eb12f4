//! `cargo xtask vmtest`: the kernels and cgroup layouts the fleet runs, each booted under
//! qemu with the host's root shared read-only, running the layout-independent integration
//! tests inside against the guest's own kernel.
//!
//! Kernels come from Debian's archive into a cache outside the repository
//! (`/var/cache/enforcer-vm`, or `ENFORCER_VM_CACHE`), reused across runs.

mod initramfs;
pub mod install;
mod kernel;
mod qemu;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

pub use qemu::Layout;

use crate::cmd::command;

/// The suites that do not depend on the host's own layout, run in every guest (those of
/// [`LAYOUTS_OF`] only where they can): CPU accounting, the cgroup actuators, the capacity
/// rule's writes, the ladder end to end with its victim order, isolation, cgroup_skb
/// counting.
pub const SUITES: &[&str] = &[
    "layouts",
    "layout_actuators",
    "capacity_memory",
    "ladder",
    "isolation",
    "net_counting",
];
// `network_tc` (the tc topology on a `bond0` made in the guest) runs with
// `--suite network_tc`: it passes on 6.12, but on 6.1 and 7.2 under emulation its restart
// test finds an IFB device gone between listing the links and reading its classes after a
// kill -9 ("Cannot find device eifb3"), which is either the successor replacing what it
// should adopt or the test racing it; not in the default matrix until that is known.
// `pressure` (direct reclaim for real) runs with `--suite pressure`: it exhausts the node's
// memory, so it is a `test = false` target that only `--test pressure` builds.
// Pure cgroup2 only. Not in the default matrix: on 7.2 the kernel's OOM killer took the
// offline process before the stall crossed the trigger's threshold (0.05 s/s over 1 s) in
// CI and twice since (105 ms and 20 ms before it), although the ticks woke on every reclaim
// episode: the trigger's measure, not its latency, is what is left (issue 14).

/// Suites that need what some layouts do not have, and the layouts they run on; every
/// other suite runs on every layout. The network programs (cgroup_skb on the cgroup2 root,
/// the classifier's cgroup ids) need a cgroup2 mount, which a pure v1 node has not.
const LAYOUTS_OF: &[(&str, &[Layout])] = &[
    ("net_counting", &[Layout::V2, Layout::Hybrid]),
    ("network_tc", &[Layout::V2, Layout::Hybrid]),
    ("pressure", &[Layout::V2]),
];

/// Whether `suite` runs in a guest with `layout`.
pub fn runs_on(suite: &str, layout: Layout) -> bool {
    LAYOUTS_OF
        .iter()
        .find(|(s, _)| *s == suite)
        .is_none_or(|(_, layouts)| layouts.contains(&layout))
}

/// A guest that has not powered off after this long is killed and counted as failed.
const BOUND: Duration = Duration::from_secs(600);

fn cache() -> PathBuf {
    std::env::var_os("ENFORCER_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/enforcer-vm"))
}

/// The test executables of `suites`, built on the host (the guest runs them from the
/// shared root).
fn test_binaries(workspace: &Path, suites: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut c = command("cargo");
    c.current_dir(workspace).args([
        "test",
        "--release",
        "-p",
        "enforcer-tests",
        "--no-run",
        "--message-format=json",
    ]);
    for s in suites {
        c.args(["--test", s]);
    }
    let out = c.output().context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the VM suites failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(at) = line.find("\"executable\":\"") else {
            continue;
        };
        let rest = &line[at + 14..];
        let Some(end) = rest.find('"') else { continue };
        // The suite is the test target's source file: `tests/tests/<suite>.rs`.
        let suite = suites
            .iter()
            .find(|s| line.contains(&format!("/tests/tests/{s}.rs\"")))
            .with_context(|| format!("a test executable of no suite asked for: {line}"))?;
        found.push((suite.clone(), PathBuf::from(&rest[..end])));
    }
    if found.len() != suites.len() {
        bail!(
            "expected {} test executables, cargo built {found:?}",
            suites.len()
        );
    }
    Ok(found)
}

/// One cell of the matrix.
#[derive(Debug)]
pub struct Cell {
    pub kernel: String,
    pub layout: Layout,
    pub passed: bool,
    pub took: Duration,
    pub note: String,
}

/// Boots each of `kernels` × `layouts` and runs `suites` in it.
pub fn run(
    workspace: &Path,
    enforcer_bin: &Path,
    kernels: &[String],
    layouts: &[Layout],
    suites: &[String],
) -> anyhow::Result<Vec<Cell>> {
    install::ensure()?;
    qemu::require_qemu()?;
    let binaries = test_binaries(workspace, suites)?;
    let specs: Vec<_> = if kernels.iter().any(|k| k == "all") {
        kernel::KERNELS.to_vec()
    } else {
        kernels
            .iter()
            .map(|k| {
                kernel::KERNELS
                    .iter()
                    .find(|s| s.name == k)
                    .copied()
                    .with_context(|| format!("unknown kernel {k:?} (6.1, 6.12, newest, all)"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let cache = cache();
    let mut cells = Vec::new();
    for spec in &specs {
        let kernel = kernel::ensure(spec, &cache)?;
        let initramfs = initramfs::ensure(&kernel, &cache)?;
        for &layout in layouts {
            let line = binaries
                .iter()
                .filter(|(suite, _)| runs_on(suite, layout))
                .map(|(_, b)| {
                    format!(
                        "ENFORCER_BIN={} {} --test-threads=1 --include-ignored --nocapture || exit 1",
                        enforcer_bin.display(),
                        b.display()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            println!(
                "\n==> vm: kernel {} ({}), cgroup {}",
                spec.name,
                kernel.release,
                layout.name()
            );
            let share = qemu::share_dir(&cache, &kernel, layout);
            let boot = qemu::boot(&kernel, &initramfs, layout, &line, workspace, &share, BOUND)?;
            let (passed, note) = match boot.exit_code {
                Some(0) => (true, "passed".to_string()),
                Some(code) => (false, format!("tests failed (exit {code})")),
                None if boot.timed_out => (false, format!("killed after {BOUND:?}")),
                None => (
                    false,
                    "no exit code: the guest did not boot or crashed".into(),
                ),
            };
            println!(
                "vm: {} {}: {note} in {:.0} s",
                kernel.release,
                layout.name(),
                boot.took.as_secs_f64()
            );
            cells.push(Cell {
                kernel: kernel.release.clone(),
                layout,
                passed,
                took: boot.took,
                note,
            });
        }
    }
    println!("\nvm matrix:");
    for c in &cells {
        println!(
            "  {:<28} {:<7} {:<6} {:>5.0} s  {}",
            c.kernel,
            c.layout.name(),
            if c.passed { "ok" } else { "FAILED" },
            c.took.as_secs_f64(),
            c.note
        );
    }
    Ok(cells)
}
