//! Programming N offline macvlan subinterfaces of `bond0` (each: HTB root + class, ingress
//! qdisc with a u32 redirect, its IFB with HTB root + class; `bond0`: HTB with four classes
//! and the cls_bpf classifier), side by side in one run:
//!
//! a) enforcer from scratch: one `survey` + `apply` (netlink, one socket per namespace);
//! b) enforcer no-op: `survey` + `apply` on the programmed topology (nothing to do);
//! c) the tc CLI, one process per command: exactly the lines of the survey's `changes`;
//! d) the same lines through `ip -batch` (the IFBs) then `tc -batch` (everything else).
//!
//! Every variant runs on one thread of the bench that has entered the host namespace with
//! `setns` (so each CLI command is exactly one `tc`/`ip` process, no `ip netns exec` or
//! `nsenter` in front) and has a private mount namespace (`unshare(CLONE_NEWNS)` on that
//! thread, `/` made recursively private) holding a bpffs where the loaded classifier is
//! pinned, for `tc ... bpf object-pinned PATH`. The mount namespace dies with the thread:
//! nothing is mounted or pinned on the host. Rounds alternate a, b, c, d; each from-scratch
//! round starts from the pristine topology (checked), enforcer's torn down by a
//! `Mode::RemoveAll` pass, the CLI's by `ip`/`tc -batch` deletions.

use std::{
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail, ensure};
use enforcer::{
    actuators::tc::reconcile::{Limits, Mode, Reconciler, Topology},
    policy::shaping::{BondShape, CLASSIFIER_NAME},
};
use enforcer_tests::{TempDir, net::NetTopology};
use serde_json::json;

use super::ms_stats;

const ROUNDS: usize = 7;
/// No-op passes after each from-scratch round.
const NOOPS_PER_ROUND: usize = 5;

fn limits() -> Limits {
    Limits {
        bond: BondShape {
            capacity: 125_000_000,
            host_limit: 62_500_000,
            offline_limit: 37_500_000,
        },
        offline_ingress: 37_500_000,
    }
}

fn reconciler(t: &NetTopology) -> anyhow::Result<Reconciler> {
    Ok(Reconciler::new(
        Topology {
            interface: "bond0".into(),
            host_netns: t.host_path(),
            offline_interfaces: Some(regex::Regex::new("^mvb")?),
        },
        None,
    )?)
}

fn errno(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path")
}

/// Gives the calling thread a private mount namespace with a bpffs mounted at `dir`, pins
/// the program `prog_id` there and enters the network namespace `netns`. Returns the pin.
fn enter_cli_env(dir: &Path, prog_id: u32, netns: &File) -> anyhow::Result<PathBuf> {
    // SAFETY: plain syscalls on this thread; the strings outlive the calls.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(errno("unshare(CLONE_NEWNS)"));
        }
        let root = c"/";
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno("making / private"));
        }
        let (dir_c, bpf) = (cstr(dir), c"bpf");
        if libc::mount(
            bpf.as_ptr(),
            dir_c.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno("mounting a private bpffs"));
        }
        if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(errno("entering the host namespace"));
        }
    }
    let pin = dir.join(CLASSIFIER_NAME);
    let out = Command::new("bpftool")
        .args(["prog", "pin", "id", &prog_id.to_string()])
        .arg(&pin)
        .output()?;
    ensure!(
        out.status.success(),
        "bpftool prog pin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(pin)
}

/// Runs `program args` (this thread's namespaces), failing with its stderr.
fn cmd_out(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Everything tc shows in the current namespace (qdiscs; classes and filters per link),
/// in one `tc -batch`. The classifier filter's name is what differs between a netlink
/// filter (the name enforcer gives it) and `object-pinned` (tc names it after the pin):
/// it is left out, the program id and tag stay.
fn tc_state(scratch: &Path) -> anyhow::Result<String> {
    let links: serde_json::Value = serde_json::from_str(&cmd_out("ip", &["-j", "link", "show"])?)?;
    let mut batch = String::from("qdisc show\n");
    for l in links.as_array().into_iter().flatten() {
        let dev = l["ifname"].as_str().unwrap_or_default();
        batch += &format!(
            "class show dev {dev}\nfilter show dev {dev} root\nfilter show dev {dev} ingress\n"
        );
    }
    let file = scratch.join("show.batch");
    std::fs::write(&file, batch)?;
    let out = Command::new("tc")
        .args(["-d", "-force", "-batch"])
        .arg(&file)
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .map(|l| match (l.find(" bpf name "), l.find(" not_in_hw")) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &l[..a], &l[b..]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The planned changes as command lines for the CLI, IFBs first (as `apply` does: the
/// redirects name them), the classifier by its pin.
fn cli_lines(changes: &[String], pin: &Path) -> Vec<String> {
    let by_name = format!("bpf name {CLASSIFIER_NAME}");
    let pinned = format!("bpf object-pinned {}", pin.display());
    let (ip, tc): (Vec<&String>, Vec<&String>) = changes.iter().partition(|c| c.starts_with("ip "));
    ip.into_iter()
        .chain(tc)
        .map(|c| c.replace(&by_name, &pinned))
        .collect()
}

/// Deletes what the CLI made: IFBs, then the roots and ingress qdiscs.
fn cli_teardown(lines: &[String], scratch: &Path) -> anyhow::Result<()> {
    let mut ip = String::new();
    let mut tc = String::new();
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["ip", "link", "add", "name", name, ..] => ip += &format!("link del {name}\n"),
            ["tc", "qdisc", _, "dev", dev, "root", ..] => {
                tc += &format!("qdisc del dev {dev} root\n")
            }
            ["tc", "qdisc", _, "dev", dev, "ingress", ..] => {
                tc += &format!("qdisc del dev {dev} ingress\n")
            }
            _ => {}
        }
    }
    for (program, body) in [("tc", tc), ("ip", ip)] {
        let file = scratch.join(format!("teardown.{program}"));
        std::fs::write(&file, body)?;
        cmd_out(program, &["-force", "-batch", &file.to_string_lossy()])?;
    }
    Ok(())
}

fn one_size(n: usize, net: u8, prog_fd: i32, prog_id: u32) -> anyhow::Result<serde_json::Value> {
    let subs: Vec<String> = (0..n).map(|i| format!("mvb{i}")).collect();
    let names: Vec<&str> = subs.iter().map(String::as_str).collect();
    let t = NetTopology::new(net, &[], &names);
    let netns = File::open(t.host_path())?;
    let scratch = TempDir::new("enf-bench-tc");
    let bpffs = scratch.path().join("bpffs");
    std::fs::create_dir(&bpffs)?;

    let result = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<serde_json::Value> {
            let pin = enter_cli_env(&bpffs, prog_id, &netns)?;
            let outcome = measure(&t, n, prog_fd, prog_id, &pin, scratch.path());
            // SAFETY: unmounting this thread's private bpffs (it would go with the thread).
            unsafe { libc::umount2(cstr(&bpffs).as_ptr(), libc::MNT_DETACH) };
            outcome
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the tc bench thread panicked"))?
    });
    drop(t);
    result
}

fn measure(
    t: &NetTopology,
    n: usize,
    prog_fd: i32,
    prog_id: u32,
    pin: &Path,
    scratch: &Path,
) -> anyhow::Result<serde_json::Value> {
    let pristine = tc_state(scratch)?;
    let limits = limits();
    let plan = {
        let mut r = reconciler(t)?;
        let s = r.survey(&[], &limits, prog_id, Mode::Shape);
        r.discard();
        ensure!(
            s.bond_present && s.errors.is_empty(),
            "survey: {:?}",
            s.errors
        );
        s.interfaces
            .iter()
            .flat_map(|i| i.changes.iter().cloned())
            .collect::<Vec<String>>()
    };
    let lines = cli_lines(&plan, pin);
    let commands: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    let (ip_file, tc_file) = (scratch.join("apply.ip"), scratch.join("apply.tc"));
    let strip = |prefix: &str| -> String {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    std::fs::write(&ip_file, strip("ip "))?;
    std::fs::write(&tc_file, strip("tc "))?;
    let ifbs = lines.iter().filter(|l| l.starts_with("ip ")).count();

    let back_to_pristine = |after: &str| -> anyhow::Result<()> {
        let now = tc_state(scratch)?;
        ensure!(now == pristine, "not torn down after {after}:\n{now}");
        Ok(())
    };
    let mut survey_t = Vec::new();
    let (mut scratch_t, mut noop_t, mut remove_t, mut cli_t, mut batch_t) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut states = Vec::new();
    for round in 0..ROUNDS {
        // a) from scratch, b) no-op, then enforcer's own removal.
        let mut r = reconciler(t)?;
        let started = Instant::now();
        let s = r.survey(&[], &limits, prog_id, Mode::Shape);
        let surveyed = started.elapsed();
        let applied = r.apply(&s, Some(prog_fd), &|_| true);
        scratch_t.push(started.elapsed());
        survey_t.push(surveyed);
        ensure!(applied.failures.is_empty(), "{:?}", applied.failures);
        ensure!(
            applied.changes.len() == plan.len(),
            "{} changes applied, {} planned",
            applied.changes.len(),
            plan.len()
        );
        if round == 0 {
            states.push(tc_state(scratch)?);
        }
        for _ in 0..NOOPS_PER_ROUND {
            let started = Instant::now();
            let s = r.survey(&[], &limits, prog_id, Mode::Shape);
            let applied = r.apply(&s, Some(prog_fd), &|_| true);
            noop_t.push(started.elapsed());
            ensure!(
                s.pending() == 0 && applied.changes.is_empty(),
                "no-op pass changed {:?}",
                applied.changes
            );
        }
        let started = Instant::now();
        let s = r.survey(&[], &limits, prog_id, Mode::RemoveAll);
        let applied = r.apply(&s, None, &|_| true);
        remove_t.push(started.elapsed());
        ensure!(applied.failures.is_empty(), "{:?}", applied.failures);
        back_to_pristine("enforcer's removal")?;

        // c) one process per command.
        let started = Instant::now();
        for c in &commands {
            let status = Command::new(c[0])
                .args(&c[1..])
                .stdout(Stdio::null())
                .status()?;
            ensure!(status.success(), "{}: {status}", c.join(" "));
        }
        cli_t.push(started.elapsed());
        if round == 0 {
            states.push(tc_state(scratch)?);
        }
        cli_teardown(&lines, scratch)?;
        back_to_pristine("the CLI's teardown")?;

        // d) ip -batch + tc -batch.
        let started = Instant::now();
        let ip_ok = Command::new("ip")
            .arg("-batch")
            .arg(&ip_file)
            .status()?
            .success();
        let tc_ok = Command::new("tc")
            .arg("-batch")
            .arg(&tc_file)
            .status()?
            .success();
        batch_t.push(started.elapsed());
        ensure!(ip_ok && tc_ok, "ip/tc -batch failed");
        if round == 0 {
            states.push(tc_state(scratch)?);
        }
        cli_teardown(&lines, scratch)?;
        back_to_pristine("the CLI's teardown (batch)")?;
    }
    let same = states.windows(2).all(|w| w[0] == w[1]);
    if !same {
        eprintln!(
            "   state after enforcer:\n{}\n   state after tc CLI:\n{}",
            states[0], states[1]
        );
    }
    let (a, a90) = ms_stats(&mut scratch_t);
    let (sv, sv90) = ms_stats(&mut survey_t);
    let (b, b90) = ms_stats(&mut noop_t);
    let (rm, rm90) = ms_stats(&mut remove_t);
    let (c, c90) = ms_stats(&mut cli_t);
    let (d, d90) = ms_stats(&mut batch_t);
    println!(
        "   {n:>3} subinterfaces, {} commands ({ifbs} ip + {} tc); state after enforcer {} the CLI's and the batch's (tc qdisc/class/filter show, {} lines)",
        plan.len(),
        plan.len() - ifbs,
        if same { "==" } else { "DIFFERS FROM" },
        states[0].lines().count()
    );
    let row = |what: &str, median: f64, p90: f64, ratio: Option<f64>| {
        println!(
            "      {what:<34} {median:>9.2} ms  p90 {p90:>9.2} ms{}",
            ratio.map_or(String::new(), |r| format!("   {r:6.1}x enforcer"))
        )
    };
    row("a) enforcer survey+apply", a, a90, None);
    row("   of which survey", sv, sv90, None);
    row("b) enforcer no-op survey+apply", b, b90, None);
    row("   enforcer RemoveAll pass", rm, rm90, None);
    row("c) tc CLI, one process per command", c, c90, Some(c / a));
    row("d) ip -batch + tc -batch", d, d90, Some(d / a));
    Ok(json!({
        "subinterfaces": n,
        "commands": plan.len(),
        "same_state": same,
        "rounds": ROUNDS,
        "enforcer_ms": {"median": a, "p90": a90},
        "enforcer_survey_ms": {"median": sv, "p90": sv90},
        "enforcer_noop_ms": {"median": b, "p90": b90, "passes": ROUNDS * NOOPS_PER_ROUND},
        "enforcer_remove_all_ms": {"median": rm, "p90": rm90},
        "cli_per_command_ms": {"median": c, "p90": c90},
        "cli_batch_ms": {"median": d, "p90": d90},
        "cli_per_command_over_enforcer": c / a,
        "cli_batch_over_enforcer": d / a,
    }))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    println!(
        "== programming N offline macvlans: enforcer netlink reconcile vs tc CLI ({ROUNDS} rounds, median / p90)"
    );
    let started = Instant::now();
    let programs = super::load_programs().context("loading the programs")?;
    let fd = programs
        .classifier_fd()
        .context("no classifier program")?
        .as_raw_fd();
    let id = programs.classifier_id().context("no classifier id")?;
    let mut sizes = Vec::new();
    for (n, net) in [(10, 60), (100, 61)] {
        sizes.push(one_size(n, net, fd, id)?);
    }
    let took = started.elapsed();
    println!("   (took {:.0} s)", took.as_secs_f64());
    drop(programs);
    Ok(json!({ "sizes": sizes, "seconds": took.as_secs_f64() }))
}
