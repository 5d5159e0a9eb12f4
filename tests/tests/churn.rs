//! Cgroup churn against the running daemon: many cgroups created and removed, cycle after
//! cycle, in the CPU hierarchy. The daemon must index them, forget them again, reclaim the
//! eBPF map entries of the removed ones, and hold its RSS and open file descriptors flat.

use std::{
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData, PerCpuHashMap};
use enforcer_tests::{
    cgroup::{TestCgroup, cpu_hog},
    daemon::{Daemon, metric_value},
    process::ChildGuard,
    require_root, unique_name, wait_until,
};

/// Cgroups created (and removed) per cycle. Creating and removing 10,000 directories in the
/// v1 `cpu` hierarchy takes about a second each way on the test host.
const CGROUPS: usize = 10_000;
/// Of which this many run a short CPU burst, so that they get entries in the eBPF map.
const BUSY: usize = 8;
/// Length of each burst (a self-bounded busy loop, killed anyway before removal).
const BURST_SECONDS: f64 = 0.3;
const CYCLES: usize = 3;
/// How long the daemon may take to index, or to forget, one cycle's cgroups.
const WAIT: Duration = Duration::from_secs(30);
/// The host's own churn (other tests' cgroups) in the index and in the map.
const TOLERANCE: u64 = 4;
const FD_TOLERANCE: i64 = 2;
const RSS_GROWTH_MAX_KIB: i64 = 4 * 1024;

/// N cgroups below `parent`, removed (processes killed first) on drop, even on panic.
struct Swarm {
    dirs: Vec<PathBuf>,
    ids: Vec<u64>,
}

impl Swarm {
    fn create(parent: &Path, prefix: &str, n: usize) -> Swarm {
        let mut swarm = Swarm {
            dirs: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
        };
        for i in 0..n {
            let dir = parent.join(format!("{prefix}-{i}"));
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
            let id = std::fs::metadata(&dir).expect("stat cgroup").ino();
            swarm.dirs.push(dir);
            swarm.ids.push(id);
        }
        swarm
    }

    /// Removes every cgroup now; returns how long it took.
    fn remove(mut self) -> Duration {
        let started = Instant::now();
        self.remove_all();
        started.elapsed()
    }

    fn remove_all(&mut self) {
        // Deepest (here: last created) first; the cgroups have no children of their own.
        while let Some(dir) = self.dirs.pop() {
            remove_cgroup(&dir);
        }
        self.ids.clear();
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Kills what still runs in `dir` and removes it, retrying while the kernel reaps.
fn remove_cgroup(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if Instant::now() > deadline {
                    eprintln!(
                        "warning: could not remove test cgroup {}: {e}",
                        dir.display()
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Spawns `command` with its process already in the cgroup `dir` before it execs.
fn spawn_into(dir: &Path, mut command: Command) -> ChildGuard {
    let procs = dir.join("cgroup.procs");
    // SAFETY: between fork and exec only async-signal-safe work: open/write/close.
    unsafe {
        command.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    ChildGuard::spawn(command)
}

/// A handle of our own on the daemon's per-cgroup CPU map, found through the daemon's
/// descriptors (`/proc/PID/fdinfo`), so that another daemon on the host is never mistaken
/// for ours.
fn cpu_map_of(pid: i32) -> PerCpuHashMap<MapData, u64, u64> {
    let fdinfo = format!("/proc/{pid}/fdinfo");
    let id = std::fs::read_dir(&fdinfo)
        .expect("read the daemon's fdinfo")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
        .find(|&id| {
            aya::maps::MapInfo::from_id(id)
                .is_ok_and(|m| m.name_as_str() == Some(enforcer_common::MAP_CPU_NS))
        })
        .expect("the daemon holds a CPU_NS map");
    PerCpuHashMap::try_from(Map::PerCpuHashMap(
        MapData::from_id(id).expect("open the daemon's CPU_NS map"),
    ))
    .expect("CPU_NS is a per-CPU hash")
}

fn map_keys(map: &PerCpuHashMap<MapData, u64, u64>) -> std::collections::HashSet<u64> {
    map.keys().filter_map(Result::ok).collect()
}

fn rss_kib(pid: i32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read the daemon's status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open descriptors, counted when no request is in flight (the least of a few looks, so a
/// connection the server is still closing does not count).
fn open_fds(pid: i32) -> i64 {
    (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("read the daemon's fds")
                .count() as i64
        })
        .min()
        .unwrap()
}

fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.cli(&["status", "--output", "json"]);
    assert!(
        out.status.success(),
        "status: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    serde_json::from_slice(&out.stdout).expect("status --output json is JSON")
}

fn cgroups_total(daemon: &Daemon) -> u64 {
    status(daemon)["cgroups_total"]
        .as_u64()
        .expect("cgroups_total")
}

/// Index entries whose path lies below the test's parent cgroup.
fn own_cgroups(daemon: &Daemon, name: &str) -> Vec<serde_json::Value> {
    let out = daemon.cli(&["cgroups", "--output", "json"]);
    assert!(
        out.status.success(),
        "cgroups: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("cgroups --output json is JSON");
    let below = format!("{name}/");
    all.into_iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.contains(&below)))
        .collect()
}

fn map_entries(daemon: &Daemon) -> u64 {
    metric_value(&daemon.scrape(), "enforcer_sampler_map_entries")
        .expect("enforcer_sampler_map_entries exported") as u64
}

/// Polls `cond` every 100 ms (each look runs the CLI) until it holds or `WAIT` passes;
/// returns the time since `started` at which it held.
fn wait_for(started: Instant, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    while started.elapsed() < WAIT {
        if cond() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond().then(|| started.elapsed())
}

struct Row {
    cycle: String,
    created: usize,
    create: Duration,
    index: Duration,
    remove: Duration,
    forget: Duration,
    rss_kib: i64,
    fds: i64,
    map_peak: u64,
    map_after: u64,
    rescan_seconds: f64,
}

fn print_table(rows: &[Row]) {
    println!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>13} {:>8}",
        "cycle",
        "cgroups",
        "mkdir",
        "index",
        "rmdir",
        "forget",
        "RSS MiB",
        "fds",
        "map peak→now",
        "rescan"
    );
    for r in rows {
        println!(
            "{:>8} {:>8} {:>7.2}s {:>7.2}s {:>7.2}s {:>7.2}s {:>8.2} {:>5} {:>13} {:>7.3}s",
            r.cycle,
            r.created,
            r.create.as_secs_f64(),
            r.index.as_secs_f64(),
            r.remove.as_secs_f64(),
            r.forget.as_secs_f64(),
            r.rss_kib as f64 / 1024.0,
            r.fds,
            format!("{}→{}", r.map_peak, r.map_after),
            r.rescan_seconds,
        );
    }
}

#[test]
fn ten_thousand_cgroups_come_and_go_and_the_daemon_stays_flat() {
    require_root();
    let test_started = Instant::now();
    let name = unique_name("enf-churn");
    // The parent exists before the baseline, so the baseline counts it; its guard also
    // removes, depth-first, whatever a panic left below it.
    let parent = TestCgroup::create("cpu", &name);
    // The defaults: cgroups learnt from the kernel's events, the walk only the safety net
    // (10,000 mkdirs in a second overflow the ring buffer: the losses cost walks).
    let daemon = Daemon::start("", "");
    let pid = daemon.pid();
    assert!(
        wait_until(Duration::from_secs(10), || {
            status(&daemon)["sampler"]["ticks_total"]
                .as_u64()
                .is_some_and(|t| t > 0)
        }),
        "no tick counted:\n{}",
        daemon.log()
    );
    let map = cpu_map_of(pid);

    let base_total = cgroups_total(&daemon);
    let base_map = map_entries(&daemon);
    let base_rss = rss_kib(pid);
    let base_fds = open_fds(pid);
    let base_sampler = status(&daemon)["sampler"].clone();
    let base_lag_max = base_sampler["tick_lag_max_seconds"].as_f64().unwrap_or(0.0);
    let base_ticks = base_sampler["ticks_total"].as_u64().unwrap_or(0);
    let churn_started = Instant::now();
    let mut rows = vec![Row {
        cycle: "baseline".into(),
        created: 0,
        create: Duration::ZERO,
        index: Duration::ZERO,
        remove: Duration::ZERO,
        forget: Duration::ZERO,
        rss_kib: base_rss,
        fds: base_fds,
        map_peak: base_map,
        map_after: base_map,
        rescan_seconds: status(&daemon)["sampler"]["rescan_seconds"]
            .as_f64()
            .unwrap_or(0.0),
    }];

    for cycle in 1..=CYCLES {
        let started = Instant::now();
        let swarm = Swarm::create(parent.dir(), &format!("c{cycle}"), CGROUPS);
        let create = started.elapsed();
        let created = Instant::now();

        // A short burst in a few of them; the guards (declared after the swarm, so dropped
        // before it on a panic) kill the loops.
        let busy_ids: Vec<u64> = swarm.ids[..BUSY].to_vec();
        let hogs: Vec<ChildGuard> = swarm.dirs[..BUSY]
            .iter()
            .map(|dir| spawn_into(dir, cpu_hog(BURST_SECONDS)))
            .collect();
        for mut hog in hogs {
            hog.wait_timeout(Duration::from_secs(10));
            drop(hog); // killed and reaped if still running
        }

        let index = wait_for(created, || {
            cgroups_total(&daemon) >= base_total + CGROUPS as u64
        })
        .unwrap_or_else(|| {
            panic!(
                "cycle {cycle}: the index never counted {CGROUPS} new cgroups (total {} \
                     against a baseline of {base_total})",
                cgroups_total(&daemon)
            )
        });
        let own = own_cgroups(&daemon, &name);
        assert_eq!(
            own.len(),
            CGROUPS,
            "cycle {cycle}: the index lists {} of the test's {CGROUPS} cgroups",
            own.len()
        );
        let listed_ids: std::collections::HashSet<u64> =
            own.iter().filter_map(|c| c["id"].as_u64()).collect();
        assert!(
            swarm.ids.iter().all(|id| listed_ids.contains(id)),
            "cycle {cycle}: the index's ids are not the cgroups' inode numbers"
        );
        // The busy cgroups got their map entries (else the reclaim check below is empty).
        assert!(
            wait_until(Duration::from_secs(5), || {
                let keys = map_keys(&map);
                busy_ids.iter().all(|id| keys.contains(id))
            }),
            "cycle {cycle}: the busy cgroups have no entries in CPU_NS"
        );
        let map_peak = map_entries(&daemon);
        let rescan_seconds = status(&daemon)["sampler"]["rescan_seconds"]
            .as_f64()
            .unwrap_or(0.0);

        let ids = swarm.ids.clone();
        let remove = swarm.remove();
        let forget = wait_for(Instant::now(), || {
            cgroups_total(&daemon) <= base_total + TOLERANCE
                && own_cgroups(&daemon, &name).is_empty()
        })
        .unwrap_or_else(|| {
            panic!(
                "cycle {cycle}: the index kept removed cgroups: total {} against a baseline of \
                 {base_total}, {} of the test's still listed",
                cgroups_total(&daemon),
                own_cgroups(&daemon, &name).len()
            )
        });
        // The map entries of removed cgroups are reclaimed: none of the test's ids is left,
        // and the exported count is back near the baseline.
        let reclaimed = wait_until(Duration::from_secs(10), || {
            let keys = map_keys(&map);
            !ids.iter().any(|id| keys.contains(id)) && map_entries(&daemon) <= base_map + TOLERANCE
        });
        let map_after = map_entries(&daemon);
        let keys = map_keys(&map);
        let left: Vec<u64> = ids.iter().copied().filter(|id| keys.contains(id)).collect();
        assert!(
            reclaimed,
            "cycle {cycle}: eBPF map entries of removed cgroups not reclaimed: {} left ({left:?}), \
             map_entries {map_after} against a baseline of {base_map}",
            left.len()
        );

        rows.push(Row {
            cycle: cycle.to_string(),
            created: CGROUPS,
            create,
            index,
            remove,
            forget,
            rss_kib: rss_kib(pid),
            fds: open_fds(pid),
            map_peak,
            map_after,
            rescan_seconds,
        });
    }

    print_table(&rows);
    let discovery = &status(&daemon)["discovery"];
    println!(
        "discovery: {} events applied, {} lost (made up by walks), {} walks, last walk {:.3}s",
        discovery["events_total"],
        discovery["events_lost_total"],
        discovery["walks_total"],
        discovery["walk_seconds"].as_f64().unwrap_or(0.0)
    );
    assert_eq!(
        discovery["events"],
        serde_json::Value::Bool(true),
        "the kernel's cgroup events are not used:\n{}",
        daemon.log()
    );
    let seen = discovery["events_total"].as_u64().unwrap_or(0)
        + discovery["events_lost_total"].as_u64().unwrap_or(0);
    assert!(
        seen >= (2 * CGROUPS * CYCLES) as u64,
        "the kernel reported {seen} cgroup events for {} mkdirs and rmdirs",
        2 * CGROUPS * CYCLES
    );
    // For the record (not asserted): the sampler's pace while discovery follows the churn.
    let sampler = &status(&daemon)["sampler"];
    let ticks = sampler["ticks_total"].as_u64().unwrap_or(0) - base_ticks;
    let churn_seconds = churn_started.elapsed().as_secs_f64();
    println!(
        "sampler during the churn: {ticks} ticks in {churn_seconds:.1}s ({:.1}/s), {} rescans in \
         all, tick lag max {:.3}s (it was {base_lag_max:.3}s before the churn)",
        ticks as f64 / churn_seconds,
        sampler["rescans_total"],
        sampler["tick_lag_max_seconds"].as_f64().unwrap_or(0.0),
    );
    println!(
        "{CYCLES} cycles of {CGROUPS} cgroups in {:.1}s; RSS {:.2} MiB at baseline, {:.2} MiB \
         after cycle 1, {:.2} MiB after cycle {CYCLES}",
        test_started.elapsed().as_secs_f64(),
        base_rss as f64 / 1024.0,
        rows[1].rss_kib as f64 / 1024.0,
        rows[CYCLES].rss_kib as f64 / 1024.0,
    );

    for r in &rows[1..] {
        assert!(
            (r.fds - base_fds).abs() <= FD_TOLERANCE,
            "open fds not flat: {base_fds} at baseline, {} after cycle {}",
            r.fds,
            r.cycle
        );
    }
    let growth = rows[CYCLES].rss_kib - rows[1].rss_kib;
    assert!(
        growth <= RSS_GROWTH_MAX_KIB,
        "RSS grew by {growth} KiB from cycle 1 to cycle {CYCLES} (at most {RSS_GROWTH_MAX_KIB})"
    );
    // The churn cost the sampler nothing: no map read failed, no credit was lost to a full
    // map, no scan failed.
    let sampler = &status(&daemon)["sampler"];
    assert_eq!(sampler["read_failures_total"], 0, "{sampler}");
    assert_eq!(sampler["dropped_total"], 0, "{sampler}");
    assert!(
        !daemon.log().contains("cannot scan"),
        "a rescan failed:\n{}",
        daemon.log()
    );
    drop(daemon);
    drop(parent);
}
