//! The journal held by the running daemon: size-capped segments rotated while it acts,
//! read back across them by `enforcer journal`, sequence numbers strictly increasing
//! across rotations and a restart; and a full file system under the journal, which must
//! not stop protection: the actions still happen, each entry goes to stderr, the failures
//! are counted in the scrape, and the daemon keeps running.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use enforcer::actuators::journal::{self, Entry, Outcome};
use enforcer_tests::{
    TempDir,
    cgroup::{TestCgroup, spawn_in},
    daemon::{Daemon, enforcer, metric_value},
    process::ChildGuard,
    require_root, unique_name, wait_until,
};

fn oom_score_adj(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn sleeper() -> Command {
    let mut c = Command::new("sleep");
    c.arg("60");
    c
}

/// `<base>-offline` is offline P2: each new process in it is an isolation batch, journaled
/// as an intent and its outcome.
fn rules(base: &str) -> String {
    format!(
        "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"t-off\"\nmatch = '{base}-offline$'\nclass = \"offline\"\npriority = \"P2\"\n"
    )
}

/// Starts a process in `cgroup` and waits until the daemon has isolated it.
fn isolated_process(cgroup: &TestCgroup) -> ChildGuard {
    let child = spawn_in(&[cgroup], sleeper());
    let pid = child.pid();
    assert!(
        wait_until(Duration::from_secs(5), || oom_score_adj(pid) == 1000),
        "process {pid} not isolated"
    );
    child
}

/// The processes an isolation batch names.
fn batch_pids(e: &Entry) -> Vec<i32> {
    e.reason["cgroups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["pids"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_i64().map(|p| p as i32))
        .collect()
}

/// One short line per entry, for failure messages.
fn summary(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "#{} {} {} {} {:?}\n",
                e.seq,
                e.stage,
                e.action,
                e.outcome.name(),
                e.detail
            )
        })
        .collect()
}

fn cli_entries(args: &[&str]) -> Vec<Entry> {
    let out = enforcer(args);
    assert!(
        out.status.success(),
        "enforcer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("journal --output json")
}

fn file_names(live: &Path) -> Vec<String> {
    journal::segment_paths(live)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Sequence numbers: non-decreasing line after line, and each intent's number new.
fn assert_sequence(entries: &[Entry]) {
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    let intents: Vec<u64> = entries
        .iter()
        .filter(|e| e.outcome == Outcome::Intent)
        .map(|e| e.seq)
        .collect();
    assert!(intents.windows(2).all(|w| w[0] < w[1]), "{intents:?}");
}

#[test]
fn the_journal_rotates_while_the_daemon_acts_and_reads_back_across_segments() {
    require_root();
    let base = unique_name("enf-jrot");
    let offline = TestCgroup::create("cpu", &format!("{base}-offline"));
    let mut daemon = Daemon::start(
        "journal_segment_size = \"4KiB\"\njournal_segments = 3\n",
        &rules(&base),
    );
    let live = daemon.dir.path().join("journal.jsonl");

    // One isolation batch per new process, each about a kilobyte of journal.
    let mut children = Vec::new();
    for _ in 0..30 {
        children.push(isolated_process(&offline));
    }
    // Stopped, so that the journal holds still while it is compared (`enforcer journal`
    // needs no daemon).
    assert!(daemon.sigterm().is_some(), "SIGTERM stops the daemon");
    let names = file_names(&live);
    eprintln!("segments: {names:?}");
    assert_eq!(
        names,
        ["journal.jsonl.2", "journal.jsonl.1", "journal.jsonl"],
        "more than two segments, at most 3"
    );
    for p in journal::segment_paths(&live).unwrap() {
        let size = std::fs::metadata(&p).unwrap().len();
        // An intent and its outcome are never parted, so a segment may pass the cap by
        // the lines of an action, a quarter of it at most.
        assert!(
            size <= 4096 + 1024 + 1024,
            "{}: {size} bytes:\n{}",
            p.display(),
            std::fs::read_to_string(&p).unwrap()
        );
    }

    let entries = daemon.journal();
    assert_sequence(&entries);
    // The oldest segments were deleted whole, and never between an intent and its
    // outcome: every intent kept has its outcome (the daemon was stopped cleanly). (Not
    // checkable for isolation batches: the choke point journals their outcome under a
    // number of its own, not the intent's.)
    assert!(entries[0].seq > 1, "nothing was deleted");
    let intents = entries
        .iter()
        .filter(|e| e.outcome == Outcome::Intent)
        .filter(|e| !matches!(e.action.as_str(), "isolate" | "restore_isolation"));
    for intent in intents {
        assert!(
            entries
                .iter()
                .any(|e| e.seq == intent.seq && e.outcome != Outcome::Intent),
            "intent {} without its outcome:\n{}",
            intent.seq,
            summary(&entries)
        );
    }
    let isolations = entries.iter().filter(|e| e.action == "isolate").count();
    eprintln!(
        "{} entries in {} segments ({isolations} isolate), seq {}..={}",
        entries.len(),
        names.len(),
        entries[0].seq,
        entries.last().unwrap().seq
    );

    // `enforcer journal` reads across the segments: more entries than the live one holds.
    let live_only = std::fs::read_to_string(&live).unwrap().lines().count();
    let file = live.to_str().unwrap();
    let last5 = cli_entries(&["journal", "--file", file, "--last", "5", "--output", "json"]);
    assert_eq!(last5, entries[entries.len() - 5..]);
    let n = (live_only + 3).to_string();
    let across = cli_entries(&["journal", "--file", file, "--last", &n, "--output", "json"]);
    assert_eq!(across.len(), live_only + 3);
    assert_eq!(across, entries[entries.len() - (live_only + 3)..]);
    let isolate = cli_entries(&[
        "journal", "--file", file, "--action", "isolate", "-o", "json",
    ]);
    assert_eq!(isolate.len(), isolations);
    assert!(isolate.len() > live_only, "--action read one segment only");
    assert!(isolate.iter().all(|e| e.action == "isolate"));
    let text = enforcer(&["journal", "--file", file, "--action", "isolate"]);
    assert!(text.status.success());
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).lines().count(),
        isolations
    );

    // A restart continues the numbers from the live segment's tail.
    let before = entries.last().unwrap().seq;
    daemon.respawn();
    for _ in 0..5 {
        children.push(isolated_process(&offline));
    }
    let after = daemon.journal();
    assert_sequence(&after);
    let new: Vec<&Entry> = after
        .iter()
        .filter(|e| e.action == "isolate" && e.outcome == Outcome::Intent)
        .filter(|e| e.seq > before)
        .collect();
    assert!(
        new.len() >= 5,
        "{} new isolations after the restart",
        new.len()
    );
    assert!(file_names(&live).len() <= 3);
    drop(children);
}

/// A tmpfs mounted for the test, unmounted (lazily, even when busy) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .expect("mount tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let block = [0u8; 4096];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    written
}

fn failures(daemon: &Daemon) -> f64 {
    metric_value(&daemon.scrape(), "enforcer_journal_write_failures_total")
        .expect("enforcer_journal_write_failures_total in the scrape")
}

fn running(daemon: &Daemon) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .map(|(_, r)| r.trim_start().chars().next());
    matches!(state, Some(Some(s)) if s != 'Z') && daemon.cli(&["status"]).status.success()
}

#[test]
fn a_full_file_system_under_the_journal_does_not_stop_protection() {
    require_root();
    let base = unique_name("enf-jfull");
    let offline = TestCgroup::create("cpu", &format!("{base}-offline"));
    let mut daemon = Daemon::start("", &rules(&base));

    // The journal moves to a 64 KiB tmpfs of the test's own (the guard's config names it
    // in [daemon]; the daemon is restarted on it).
    let fs_dir = TempDir::new("enforcer-jfs");
    let fs = Tmpfs::mount(fs_dir.path(), "64k");
    let live = fs.0.join("journal.jsonl");
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("journal = ") {
                format!("journal = \"{}\"\n", live.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&daemon.config, config).unwrap();
    assert!(daemon.sigterm().is_some());
    daemon.respawn();
    assert!(live.exists(), "the journal opened on the tmpfs");

    let mut children = vec![isolated_process(&offline)];
    let journaled = journal::read(&live).unwrap();
    assert!(
        journaled.iter().any(|e| e.action == "isolate"),
        "the tmpfs journal is written while there is room"
    );
    assert_eq!(failures(&daemon), 0.0);

    // The file system fills up; the daemon must act on regardless. (The journal's last
    // page may still hold a line or two: act until writes fail.)
    let filled = fill(&fs.0.join("filler"));
    eprintln!("tmpfs filled with {filled} bytes");
    let mut unjournaled = Vec::new();
    while failures(&daemon) < 4.0 {
        assert!(unjournaled.len() < 10, "no write failure counted");
        let child = isolated_process(&offline);
        unjournaled.push(child.pid());
        children.push(child);
    }
    let counted = failures(&daemon);
    eprintln!(
        "{} processes isolated on a full file system; enforcer_journal_write_failures_total = {counted}",
        unjournaled.len()
    );
    assert!(running(&daemon), "the daemon stopped:\n{}", daemon.log());

    // Every entry that could not be written is on stderr, one line each.
    let log = daemon.log();
    let copies: Vec<Entry> = log
        .lines()
        .filter_map(|l| l.strip_prefix("enforcer: journal unavailable ("))
        .map(|rest| {
            let (why, json) = rest.split_once("): ").expect("prefix ends with ): ");
            assert!(
                why.starts_with(live.to_str().unwrap()) && why.contains("No space left on device"),
                "{why}"
            );
            serde_json::from_str(json).expect("the entry as JSON")
        })
        .collect();
    assert!(
        copies.len() as f64 >= counted && copies.len() as f64 <= failures(&daemon),
        "{} copies on stderr, {counted} failures counted:\n{log}",
        copies.len()
    );
    // What was done unjournaled was done: each isolation on stderr holds.
    let applied: Vec<i32> = copies
        .iter()
        .filter(|e| e.action == "isolate" && e.outcome == Outcome::Applied)
        .flat_map(batch_pids)
        .collect();
    assert!(!applied.is_empty(), "no isolation on stderr:\n{log}");
    for pid in &applied {
        assert!(
            unjournaled.contains(pid),
            "{pid} isolated unjournaled, not by the test"
        );
        assert_eq!(oom_score_adj(*pid), 1000);
    }
    let said = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        said("journal unavailable: each entry goes to stderr"),
        1,
        "{log}"
    );
    // Nothing torn or glued stays in the journal.
    let text = std::fs::read_to_string(&live).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Entry>(l).is_ok()),
        "{text}"
    );

    // Room again: the next entries are written, and the daemon says so once.
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    let back = isolated_process(&offline);
    let pid = back.pid();
    children.push(back);
    assert!(
        wait_until(Duration::from_secs(3), || journal::read(&live)
            .unwrap()
            .iter()
            .any(
                |e| e.outcome == Outcome::Applied && batch_pids(e).contains(&pid)
            )),
        "the journal is not written again"
    );
    assert!(wait_until(Duration::from_secs(2), || daemon
        .log()
        .contains("journal writable again")));
    let log = daemon.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("journal writable again"))
            .count(),
        1,
        "{log}"
    );
    assert!(failures(&daemon) >= counted);
    let text = std::fs::read_to_string(&live).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Entry>(l).is_ok()),
        "{text}"
    );
    assert_sequence(&journal::read(&live).unwrap());
    assert!(running(&daemon));
    drop(children);
    drop(daemon);
}
