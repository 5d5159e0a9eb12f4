//! File system usage (SPEC §1: reported, never enforced) as the real daemon exports it:
//! a tmpfs mounted for the daemon alone (a private mount namespace) reads exactly what
//! `statvfs` and `df` say, follows a file written into it, and a path that does not exist
//! is one line in the log and no series. The root file system, read with the default root
//! (`/proc/1/root`, or `/` where that cannot be entered), matches `statvfs /`.

use std::{path::Path, process::Command, time::Duration};

use enforcer_tests::{
    TempDir,
    daemon::{Daemon, Launch, metric_value},
    require_root, unique_name, wait_until,
};

const MIB: u64 = 1 << 20;

/// `(size, avail, used ratio as df computes Use%)` from statvfs.
fn statvfs(path: &Path) -> (f64, f64, f64) {
    let v = nix::sys::statvfs::statvfs(path).expect("statvfs");
    let f = v.fragment_size();
    let (size, free, avail) = (
        v.blocks() * f,
        v.blocks_free() * f,
        v.blocks_available() * f,
    );
    let used = size - free;
    (
        size as f64,
        avail as f64,
        used as f64 / (used + avail) as f64,
    )
}

/// df's Use% of `path` in the mount namespace of process `pid`, in percent (df finds the
/// mount in its own mount table, so it must run where the mount is).
fn df_use_percent(pid: i32, path: &Path) -> f64 {
    let out = Command::new("nsenter")
        .args(["-m", "-t", &pid.to_string(), "df", "--output=pcent"])
        .arg(path)
        .output()
        .expect("run nsenter df");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().trim_end_matches('%').parse().ok())
        .expect("df prints a percentage")
}

fn series(name: &str, mountpoint: &Path) -> String {
    format!("{name}{{mountpoint=\"{}\"}}", mountpoint.display())
}

#[test]
fn a_private_tmpfs_reads_as_statvfs_and_df_and_a_missing_path_is_one_line() {
    require_root();
    let dir = TempDir::new("enf-fs");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let missing = Path::new("/").join(unique_name("enf-fs-missing"));
    let extra = format!(
        "[network]\nenabled = false\n[filesystems]\nmountpoints = [\"{}\", \"{}\"]\ninterval = \"1s\"\nroot = \"/\"\n",
        mnt.display(),
        missing.display()
    );
    let launch = Launch {
        private_tmpfs: Some((mnt.clone(), 16 * MIB)),
        ..Launch::default()
    };
    let daemon = Daemon::start_with("", &extra, launch);
    // The daemon's view of the mount; from the host, `mnt` is an empty directory.
    let seen = Path::new("/proc")
        .join(daemon.pid().to_string())
        .join("root")
        .join(mnt.strip_prefix("/").unwrap());
    let ratio = series("enforcer_filesystem_used_ratio", &mnt);
    assert!(
        wait_until(Duration::from_secs(5), || metric_value(
            &daemon.scrape(),
            &ratio
        )
        .is_some()),
        "{ratio} never exported:\n{}",
        daemon.log()
    );
    let check = |text: &str| {
        let (size, avail, used) = statvfs(&seen);
        assert_eq!(size, 16.0 * MIB as f64, "the tmpfs mounted for the daemon");
        assert_eq!(
            metric_value(text, &series("enforcer_filesystem_size_bytes", &mnt)),
            Some(size),
            "{text}"
        );
        assert_eq!(
            metric_value(text, &series("enforcer_filesystem_avail_bytes", &mnt)),
            Some(avail),
            "{text}"
        );
        let exported = metric_value(text, &ratio).unwrap();
        assert!((exported - used).abs() < 1e-9, "{exported} != {used}");
        // df rounds Use% up to a whole percent.
        assert_eq!(
            df_use_percent(daemon.pid(), &mnt),
            (exported * 100.0).ceil(),
            "{text}"
        );
        let age = metric_value(text, &series("enforcer_filesystem_read_age_seconds", &mnt));
        assert!(age.is_some_and(|a| (0.0..2.0).contains(&a)), "{age:?}");
        exported
    };
    let empty = check(&daemon.scrape());
    assert!(empty < 0.01, "an empty tmpfs is {empty}");

    // 12 MiB written into it: the next reading follows.
    std::fs::write(seen.join("fill"), vec![1u8; 12 * MIB as usize]).unwrap();
    let (_, _, full) = statvfs(&seen);
    assert!(full > 0.74, "{full}");
    assert!(
        wait_until(Duration::from_secs(4), || metric_value(
            &daemon.scrape(),
            &ratio
        )
        .is_some_and(|r| (r - full).abs() < 1e-9)),
        "the ratio never followed the write to {full}:\n{}",
        daemon.scrape()
    );
    check(&daemon.scrape());

    // The missing path: no series, and one line naming it however many readings failed.
    std::thread::sleep(Duration::from_secs(2));
    let text = daemon.scrape();
    assert!(
        !text.contains(&format!("mountpoint=\"{}\"", missing.display())),
        "{text}"
    );
    let log = daemon.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&missing.display().to_string()))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("filesystems.mountpoints") && lines[0].contains("No such file"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_root_file_system_with_the_default_root_matches_statvfs() {
    require_root();
    // The default root: /proc/1/root, the node's own mounts, where it can be entered (it
    // cannot in some sandboxes: the daemon then says so once and reads its own `/`, which
    // is the node's here, as this test runs in the host's mount namespace).
    let init = std::fs::metadata("/proc/1/root/.").is_ok();
    let daemon = Daemon::start(
        "",
        "[network]\nenabled = false\n[filesystems]\nmountpoints = [\"/\"]\ninterval = \"1s\"\n",
    );
    let size = series("enforcer_filesystem_size_bytes", Path::new("/"));
    assert!(
        wait_until(Duration::from_secs(5), || metric_value(
            &daemon.scrape(),
            &size
        )
        .is_some()),
        "{size} never exported:\n{}",
        daemon.log()
    );
    let text = daemon.scrape();
    let fallback = daemon
        .log()
        .lines()
        .filter(|l| l.contains("cannot enter /proc/1/root"))
        .count();
    assert_eq!(fallback, if init { 0 } else { 1 }, "{}", daemon.log());
    let (expected_size, avail, used) = statvfs(Path::new("/"));
    assert_eq!(metric_value(&text, &size), Some(expected_size), "{text}");
    // Others write to this file system meanwhile: close, not equal.
    let exported_avail = metric_value(
        &text,
        &series("enforcer_filesystem_avail_bytes", Path::new("/")),
    )
    .unwrap();
    assert!(
        (exported_avail - avail).abs() <= expected_size * 0.01,
        "avail {exported_avail} vs statvfs {avail}"
    );
    let ratio = metric_value(
        &text,
        &series("enforcer_filesystem_used_ratio", Path::new("/")),
    )
    .unwrap();
    assert!(
        (ratio - used).abs() < 0.01,
        "used {ratio} vs statvfs {used}"
    );
}
