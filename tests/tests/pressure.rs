//! Direct reclaim, for real: the mission's own trigger ("throttle or kill offline work when
//! direct reclaim is detected") driven end to end by node-wide memory pressure. That cannot
//! be provoked safely on a shared host, so this suite runs only inside a guest of the VM
//! matrix (`cargo xtask vmtest --suite pressure`), where the test owns the node's 2 GiB and
//! there is no swap. It is a `test = false` target (tests/Cargo.toml): the host's `cargo
//! test` neither builds nor lists it, and run on a host by hand it refuses.
//!
//! The node: an offline unit holds 60% of the memory available (anonymous, unreclaimable
//! without swap), then an online unit grows slowly past what is left. The kernel reclaims
//! the page cache in the allocating tasks' context (direct reclaim); the `vmscan` programs
//! see those stalls, the ladder's direct-reclaim trigger fires with the measured stall
//! (node CPU and memory triggers are set out of reach, so no other trigger can), the offline
//! side is squeezed, frozen, and the offline unit killed; the online process lives on,
//! never OOM-killed. What the matrix found: the daemon's own pages were reclaimed with the
//! page cache and it saw the stall only after the OOM killer had acted (now it locks its
//! memory); and on a node without swap the page cache runs out within a few hundred
//! milliseconds of the first stall, so the kernel's OOM killer may take the offline process
//! (the one isolation marked for it) before the ladder's kill. The test asserts that the
//! trigger fired before the offline unit began to die, whoever killed it, and reports which
//! came first; the tick wakes on every direct-reclaim episode (the ring of `reclaim.rs`).

use std::{process::Command, time::Duration};

use enforcer_tests::{
    daemon::Daemon,
    layout::Unit,
    require_root, wait_until,
    workload::{rules, taken},
};

const MIB: u64 = 1 << 20;

/// `/proc/meminfo`'s `field`, in bytes.
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"))
        * 1024
}

/// The kernel's OOM kills in its log since boot: (seconds since boot, the line).
fn kernel_oom_kills() -> Vec<(f64, String)> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .expect("/dev/kmsg");
    let mut out = Vec::new();
    let mut record = vec![0u8; 8192];
    // One record per read; EAGAIN at the end (EPIPE: a record overwritten, read on).
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                let Some((head, msg)) = text.split_once(';') else {
                    continue;
                };
                if msg.starts_with("Out of memory: Killed process") {
                    let usec: f64 = head
                        .split(',')
                        .nth(2)
                        .and_then(|u| u.parse().ok())
                        .unwrap_or(0.0);
                    out.push((usec / 1e6, msg.trim().to_string()));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

/// Seconds since boot of a journal time (seconds since the epoch): both clocks read now.
fn since_boot(unix: f64) -> f64 {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    unix - (now - uptime)
}

/// The kernel's own record of direct reclaim (the `vmscan` trace events, in the guest's
/// tracefs): what the node went through, per 100 ms, printed with the test's timeline. It
/// asserts nothing: it shows what the trigger had to see, beside what the daemon saw.
struct ReclaimTrace;

const TRACING: &str = "/sys/kernel/tracing";

impl ReclaimTrace {
    fn start() -> ReclaimTrace {
        let write = |file: &str, value: &str| {
            std::fs::write(format!("{TRACING}/{file}"), value)
                .unwrap_or_else(|e| panic!("{TRACING}/{file}: {e}"))
        };
        write("buffer_size_kb", "16384");
        write("trace", "");
        for event in [
            "mm_vmscan_direct_reclaim_begin",
            "mm_vmscan_direct_reclaim_end",
        ] {
            write(&format!("events/vmscan/{event}/enable"), "1");
        }
        write("tracing_on", "1");
        ReclaimTrace
    }

    /// Episodes and stall per 100 ms, from the first episode on (seconds since boot, the
    /// clock of the kernel log's OOM lines too).
    fn report(&self) {
        let _ = std::fs::write(format!("{TRACING}/tracing_on"), "0");
        let text = std::fs::read_to_string(format!("{TRACING}/trace")).unwrap_or_default();
        // "  python3-140  [001] .....  52.123456: mm_vmscan_direct_reclaim_begin: order=0 ..."
        let mut begun: std::collections::HashMap<String, f64> = Default::default();
        let mut buckets: std::collections::BTreeMap<i64, (u32, f64)> = Default::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((head, event)) = line.split_once(": mm_vmscan_direct_reclaim_") else {
                continue;
            };
            let mut fields = head.split_whitespace();
            let task = fields.next().unwrap_or("").to_string();
            let Some(at) = fields
                .last()
                .and_then(|t| t.trim_end_matches(':').parse::<f64>().ok())
            else {
                continue;
            };
            if event.starts_with("begin") {
                begun.insert(task, at);
            } else if let Some(from) = begun.remove(&task) {
                let bucket = buckets.entry((from * 10.0).floor() as i64).or_default();
                bucket.0 += 1;
                bucket.1 += at - from;
            }
        }
        println!(
            "kernel trace, direct reclaim per 100 ms (start s since boot: episodes, stall ms):"
        );
        for (bucket, (episodes, stall)) in &buckets {
            println!(
                "  {:9.1} {episodes:5} {:8.1}",
                *bucket as f64 / 10.0,
                stall * 1000.0
            );
        }
        if !begun.is_empty() {
            println!("  still in direct reclaim at the end: {}", begun.len());
        }
    }
}

impl Drop for ReclaimTrace {
    fn drop(&mut self) {
        for event in [
            "mm_vmscan_direct_reclaim_begin",
            "mm_vmscan_direct_reclaim_end",
        ] {
            let _ = std::fs::write(format!("{TRACING}/events/vmscan/{event}/enable"), "0");
        }
    }
}

/// A guest of `cargo xtask vmtest`: its init puts the layout on the kernel command line.
fn in_vm_guest() -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.contains("enforcer.cgroup="))
}

/// Grows anonymous memory by 8 MiB every 400 ms (20 MiB/s) up to `bytes`, touching every
/// page, then holds it for `hold_s`: slow enough that the page cache runs out over
/// seconds, as on a node whose online service grows, not at once.
fn grower(bytes: u64, hold_s: u32) -> Command {
    let mut c = Command::new("python3");
    c.args([
        "-c",
        "import sys, time\n\
         step, target, held = 8 << 20, int(sys.argv[1]), []\n\
         while len(held) * step < target:\n    \
             held.append(b'\\x01' * step)\n    \
             time.sleep(0.4)\n\
         time.sleep(float(sys.argv[2]))\n",
        &bytes.to_string(),
        &hold_s.to_string(),
    ]);
    c
}

#[test]
fn direct_reclaim_fires_the_ladder_which_squeezes_then_kills_the_offline_unit_and_online_lives() {
    require_root();
    assert!(
        in_vm_guest(),
        "this test exhausts the node's memory: it runs only in a guest of `cargo xtask vmtest`, never on a host"
    );
    assert_eq!(
        meminfo("SwapTotal"),
        0,
        "the guest must have no swap: anonymous memory is what cannot be reclaimed"
    );
    let offline = Unit::create("enf-press-off");
    let online = Unit::create("enf-press-on");
    let base_rules = rules("x", &[]);
    let config = format!(
        "{base_rules}[[classify.rules]]\nname = \"test-offline\"\nmatch = '{}$'\nclass = \"offline\"\npriority = \"P3\"\n\
         [[classify.rules]]\nname = \"test-online\"\nmatch = '{}$'\nclass = \"online\"\n\
         [capacity]\nenabled = false\n\
         [ladder]\ncpu_trigger = 1.0\ncpu_recover = 0.99\nmemory_trigger = 1.0\nmemory_recover = 0.99\n\
         sustain = \"100ms\"\nthrottle_after = \"0s\"\nfreeze_after = \"0s\"\nevict_after = \"200ms\"\n\
         evict_cooldown = \"2s\"\nrecover_hold = \"2s\"\n",
        offline.name, online.name
    );
    let daemon = Daemon::start("", &config);

    let available = meminfo("MemAvailable");
    let hold = available * 6 / 10;
    let mut stress = Command::new("stress-ng");
    stress.args([
        "--vm",
        "1",
        "--vm-bytes",
        &format!("{}M", hold / MIB),
        "--vm-hang",
        "0",
        // Killed by the kernel's OOM killer, it stays dead (no respawn to hide it).
        "--oomable",
        "--timeout",
        "180s",
        "--quiet",
    ]);
    let _holder = offline.spawn(stress);
    assert!(
        wait_until(Duration::from_secs(120), || meminfo("MemAvailable")
            <= available - hold * 9 / 10),
        "the offline unit never held {} MiB (MemAvailable {} MiB of {} MiB before)",
        hold / MIB,
        meminfo("MemAvailable") / MIB,
        available / MIB
    );
    // stress-ng touches its last pages after the 90% mark: what is left is read once the
    // node's figure has stopped moving.
    let mut before = meminfo("MemAvailable");
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::thread::sleep(Duration::from_millis(500));
            let now = meminfo("MemAvailable");
            let still = before.abs_diff(now) < 4 * MIB;
            before = now;
            still
        }),
        "the node's available memory never settled"
    );
    assert!(
        kernel_oom_kills().is_empty(),
        "OOM kills before the test: {:?}",
        kernel_oom_kills()
    );
    let left = meminfo("MemAvailable");
    // Past what is left by 64 MiB: only the page cache (binaries, libraries) is left to
    // reclaim, in the allocating tasks' own context, and not enough of it.
    let grow_to = left + 64 * MIB;
    let trace = ReclaimTrace::start();
    let started = std::time::Instant::now();
    let mut online_proc = online.spawn(grower(grow_to, 60));
    println!(
        "node: {} MiB available, offline holds {} MiB, online grows to {} MiB",
        available / MIB,
        hold / MIB,
        grow_to / MIB
    );

    // The offline unit dies first: the ladder kills it, or the kernel's OOM killer takes its
    // process (isolation gave it oom_score_adj 1000) when the page cache ran out sooner
    // than the ladder's sustain and evict_after: on a node without swap that is a few
    // hundred milliseconds, and both are the protection SPEC §3-4 asks for.
    let ladder_kill = |journal: &[enforcer::actuators::journal::Entry]| {
        taken(journal, "kill", false)
            .into_iter()
            .find(|e| e.target.as_deref() == Some(offline.rel.as_str()))
            .cloned()
    };
    let kernel_kill = || {
        kernel_oom_kills()
            .into_iter()
            .find(|(_, line)| line.contains("oom_score_adj:1000"))
    };
    assert!(
        wait_until(Duration::from_secs(120), || {
            ladder_kill(&daemon.journal()).is_some()
                || (kernel_kill().is_some() && offline.pids().is_empty())
        }),
        "the offline unit was never killed, by the ladder or the kernel:\n{:#?}\ndaemon log:\n{}",
        daemon.journal(),
        daemon.log()
    );
    let took = started.elapsed();
    let journal = daemon.journal();
    println!("timeline (seconds since boot):");
    for e in journal
        .iter()
        .filter(|e| e.outcome != enforcer::actuators::journal::Outcome::Intent)
    {
        println!(
            "  {:9.3} {} {} {:?} {}",
            since_boot(e.at),
            e.action,
            e.outcome.name(),
            e.target,
            e.reason["trigger"]
        );
    }
    let ooms = kernel_oom_kills();
    for (at, line) in &ooms {
        println!("  {at:9.3} kernel: {line}");
    }
    trace.report();
    let trigger_of = |e: &enforcer::actuators::journal::Entry| e.reason["trigger"].clone();
    let by_reclaim = |e: &enforcer::actuators::journal::Entry| {
        e.outcome == enforcer::actuators::journal::Outcome::Applied
            && trigger_of(e)["trigger"] == "direct_reclaim"
    };
    let ladder_killed = ladder_kill(&journal);
    // When the offline unit began to die: the ladder's kill (its intent) or the kernel's
    // first OOM kill, whichever came first.
    let died_at = ladder_killed
        .as_ref()
        .map(|kill| {
            journal
                .iter()
                .find(|e| e.seq == kill.seq)
                .map_or(since_boot(kill.at), |e| since_boot(e.at))
        })
        .into_iter()
        .chain(ooms.first().map(|(at, _)| *at))
        .fold(f64::INFINITY, f64::min);
    // The ladder's direct-reclaim trigger fired before the offline unit died, with the
    // stall it measured.
    let first = journal
        .iter()
        .find(|e| by_reclaim(e))
        .unwrap_or_else(|| panic!("no action on the direct-reclaim trigger:\n{journal:#?}"));
    let first_at = since_boot(first.at);
    assert!(
        first_at <= died_at,
        "the trigger fired at {first_at:.3} s, after the offline unit died at {died_at:.3} s:\n{journal:#?}"
    );
    let stall = trigger_of(first)["stall_per_second"].as_f64().unwrap();
    assert!(stall > 0.05, "measured stall {stall} s/s");
    // The ladder went its way: the offline side squeezed (a quota or a memory limit
    // applied) and, when the ladder killed, a freeze asked for (under reclaim it may stall:
    // failed is fine) before the kill.
    let kill_seq = ladder_killed.as_ref().map_or(u64::MAX, |k| k.seq);
    let before_kill = |action: &str, applied: bool| {
        journal.iter().any(|e| {
            e.action == action
                && e.seq < kill_seq
                && e.target.as_deref() == Some(offline.rel.as_str())
                && (!applied || e.outcome == enforcer::actuators::journal::Outcome::Applied)
                && trigger_of(e)["trigger"] == "direct_reclaim"
        })
    };
    assert!(
        before_kill("cpu_limit", true) || before_kill("memory_limit", true),
        "no squeeze on the direct-reclaim trigger:\n{journal:#?}"
    );
    if let Some(kill) = &ladder_killed {
        assert_eq!(
            trigger_of(kill)["trigger"],
            "direct_reclaim",
            "the kill's trigger"
        );
        assert!(
            before_kill("freeze", false),
            "no freeze before the kill:\n{journal:#?}"
        );
    }
    // Nothing online was ever acted on.
    assert!(
        journal
            .iter()
            .all(|e| e.target.as_deref() != Some(online.rel.as_str())),
        "an action targeted the online unit"
    );
    let metrics = daemon.scrape();
    let direct_stall: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("enforcer_reclaim_stall_seconds_total{kind=\"direct\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        direct_stall > 0.0,
        "no direct-reclaim stall exported:\n{metrics}"
    );
    // The online process lives on, never OOM-killed.
    assert!(
        online_proc.child_mut().try_wait().unwrap().is_none(),
        "the online process died:\n{}",
        daemon.log()
    );
    if online.has_memory() {
        assert_eq!(online.oom_kills(), 0, "the online unit was OOM-killed");
    }
    // The kernel's OOM killer, if it acted, picked an offline process: isolation gave every
    // offline process oom_score_adj 1000, so the online one is never its choice.
    for (_, line) in &ooms {
        assert!(
            line.contains("oom_score_adj:1000") && !line.contains("python3"),
            "the kernel OOM-killed a process that is not an isolated offline one: {line}"
        );
    }
    let wakeups = metrics
        .lines()
        .find_map(|l| l.strip_prefix("enforcer_sampler_reclaim_wakeups_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no enforcer_sampler_reclaim_wakeups_total:\n{metrics}"));
    assert!(
        wakeups > 0.0,
        "no tick was woken by direct reclaim (the ladder saw it only on its schedule)"
    );
    println!(
        "direct reclaim: the offline unit died {:.1} s after the online unit began to grow, {}; first trigger at {first_at:.3} s since boot ({:.3} s before), stall {stall:.3} s/s ({direct_stall:.3} s stalled in all), {wakeups} ticks woken by reclaim; kernel OOM kills of offline processes: {:?} (relative to the first trigger)",
        took.as_secs_f64(),
        match (&ladder_killed, ooms.is_empty()) {
            (Some(_), true) => "killed by the ladder, the kernel's OOM killer never acted",
            (Some(_), false) => "the kernel's OOM killer took a process, the ladder the rest",
            (None, _) => "OOM-killed by the kernel (the ladder was still on its way)",
        },
        died_at - first_at,
        ooms.iter()
            .map(|(at, _)| format!("{:+.3} s", at - first_at))
            .collect::<Vec<_>>()
    );
}
