//! `enforcer top`: a live per-cgroup CPU table from the daemon (think `systemd-cgtop`, with
//! figures from eBPF rather than cgroupfs polling). Exits on `q` or Ctrl-C.

use std::{
    fmt::Write as _,
    io::{IsTerminal, Read, Write},
    os::fd::AsFd,
    path::Path,
    time::{Duration, Instant},
};

use nix::sys::termios::{self, LocalFlags, SetArg};

use super::{cgroups::render_cgroup_table, rate};
use crate::surfaces::{
    control::{self, ControlError},
    snapshot::{NetworkSnapshot, Snapshot},
};

/// Restores the terminal when dropped, whatever way `top` ends.
struct RawMode {
    saved: termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        // No line buffering or echo so a single `q` is read at once; keep ISIG so that
        // Ctrl-C still delivers SIGINT.
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        raw.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 0;
        raw.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
        print!("\x1b[?25h");
        let _ = std::io::stdout().flush();
    }
}

pub struct TopOptions {
    pub interval: Duration,
    /// Stop after this many refreshes (for scripts); run until `q`/Ctrl-C when absent.
    pub iterations: Option<u64>,
    pub rows: usize,
    pub json: bool,
}

/// One screen of `top` (also what it prints, one per refresh, when not on a terminal).
pub(super) fn frame(s: &Snapshot, rows: usize) -> String {
    let mut out = format!(
        "enforcer top — {}  node CPU {:.1}% of {} CPUs   {} cgroups   (q to quit)\n\n",
        s.node,
        s.node_cpu_utilisation * 100.0,
        s.online_cpus,
        s.cgroups_total
    );
    let shown = &s.cgroups[..s.cgroups.len().min(rows)];
    out.push_str(&render_cgroup_table(shown, true));
    out.push_str(&render_network(&s.network, rows.div_ceil(3)));
    out
}

/// The network part of `enforcer top`: the offline limit against online use, and the
/// cgroups moving the most bytes.
fn render_network(n: &NetworkSnapshot, rows: usize) -> String {
    let mut out = String::new();
    let v = &n.view;
    if !v.enabled {
        return out;
    }
    let _ = writeln!(
        out,
        "\nnetwork {}: online tx {} rx {}   offline tx {} rx {}   offline limit {} / {}{}",
        v.interface,
        rate(v.online_rate.egress),
        rate(v.online_rate.ingress),
        rate(v.offline_rate.egress),
        rate(v.offline_rate.ingress),
        rate(v.offline_limit.egress),
        rate(v.offline_limit.ingress),
        if v.offline_over_share {
            "   OVER SHARE"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:>12} {:>12} {:<8} {:<6}  PATH",
        "RX/s", "TX/s", "CLASS", "PRIO"
    );
    for c in n.cgroups.iter().take(rows) {
        let _ = writeln!(
            out,
            "{:>12} {:>12} {:<8} {:<6}  {}",
            rate(c.rx_bytes_per_second),
            rate(c.tx_bytes_per_second),
            c.class.as_str(),
            c.priority.map_or("-".to_string(), |p| p.to_string()),
            if c.path.is_empty() { "/" } else { &c.path }
        );
    }
    out
}

pub fn run(socket: &Path, opts: TopOptions) -> Result<(), ControlError> {
    let interactive = std::io::stdout().is_terminal() && !opts.json;
    let _raw = if interactive && std::io::stdin().is_terminal() {
        RawMode::enter()
    } else {
        None
    };
    let interrupted = install_sigint_flag();
    let mut count = 0u64;
    loop {
        let snapshot = control::snapshot(socket, Some(opts.rows))?;
        let mut stdout = std::io::stdout().lock();
        if opts.json {
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string(&snapshot).unwrap_or_default()
            );
        } else if interactive {
            let _ = write!(
                stdout,
                "\x1b[?25l\x1b[H\x1b[2J{}",
                frame(&snapshot, opts.rows)
            );
        } else {
            let _ = writeln!(stdout, "{}", frame(&snapshot, opts.rows));
        }
        let _ = stdout.flush();
        drop(stdout);
        count += 1;
        if opts.iterations.is_some_and(|n| count >= n) {
            return Ok(());
        }
        let deadline = Instant::now() + opts.interval;
        while Instant::now() < deadline {
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) || quit_pressed() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn quit_pressed() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut buf = [0u8; 16];
    // Non-blocking thanks to VMIN = VTIME = 0.
    match std::io::stdin().read(&mut buf) {
        Ok(n) => buf[..n].iter().any(|&b| b == b'q' || b == b'Q'),
        Err(_) => false,
    }
}

fn install_sigint_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::{Arc, OnceLock, atomic::AtomicBool};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    extern "C" fn on_sigint(_: libc::c_int) {
        if let Some(flag) = FLAG.get() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigint),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action);
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action);
    }
    flag
}
