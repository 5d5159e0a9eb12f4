//! Memory sight through the running daemon: per-class memory with shmem/tmpfs broken out,
//! and memcg reclaim attributed to the class of the cgroup under pressure.

use std::{process::Command, time::Duration};

use enforcer_tests::{
    cgroup::{TestCgroup, mount_point, own_cgroup_dir, spawn_in},
    daemon::{Daemon, metric_value},
    load::memcg_squeeze,
    require_root, unique_name,
};

const MIB: u64 = 1 << 20;

/// Removes a file on drop (the tmpfs file a test writes).
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A memory cgroup under the test's own memory cgroup, with a cpu twin at the same
/// relative path (what kubelet does on real nodes), so both hierarchies agree on it.
struct Twin {
    memory: TestCgroup,
    _cpu: TestCgroup,
    cpu_dir: std::path::PathBuf,
}

fn twin(name: &str) -> Twin {
    let own = own_cgroup_dir("memory");
    let rel = own
        .strip_prefix(mount_point("memory").unwrap())
        .unwrap()
        .join(name);
    let cpu_mount = mount_point("cpu").unwrap();
    Twin {
        memory: TestCgroup::create_at(&own, name),
        _cpu: TestCgroup::create_path(&cpu_mount, rel.to_str().unwrap()),
        cpu_dir: cpu_mount.join(&rel),
    }
}

fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.cli(&["status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).expect("status json")
}

fn offline_memory(st: &serde_json::Value) -> (u64, u64) {
    let m = st["memory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["class"] == "offline")
        .unwrap();
    (
        m["usage"]["usage_bytes"].as_u64().unwrap(),
        m["usage"]["shmem_bytes"].as_u64().unwrap(),
    )
}

#[test]
fn offline_memory_counts_tmpfs_and_memcg_pressure_is_attributed_to_offline() {
    require_root();
    let base = unique_name("enf-mem");
    let rules = format!(
        "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"t-off\"\nmatch = '{base}-'\nclass = \"offline\"\npriority = \"P2\"\n\n[ladder]\nreclaim_stall_trigger = 0.01\n\n[capacity]\nenabled = false\n"
    );
    let shm = twin(&format!("{base}-shm"));
    let squeezed = twin(&format!("{base}-squeezed"));
    let daemon = Daemon::start("rescan_interval = \"200ms\"", &rules);

    // 64 MiB written to tmpfs from inside an offline cgroup: charged to it as shmem.
    let file = format!("/dev/shm/{base}");
    let _cleanup = RemoveOnDrop(file.clone());
    let mut writer = Command::new("sh");
    writer.args([
        "-c",
        &format!("dd if=/dev/zero of={file} bs=1M count=64 2>/dev/null; sleep 30"),
    ]);
    let _writer = spawn_in(&[&shm.memory], writer);
    let mut seen = (0, 0);
    for _ in 0..50 {
        seen = offline_memory(&status(&daemon));
        if seen.1 >= 60 * MIB {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.0 >= 60 * MIB && seen.1 >= 60 * MIB,
        "offline memory {seen:?}"
    );
    assert!(shm.cpu_dir.exists());

    // A bounded allocator at its memcg limit: reclaim, attributed to the offline class.
    let mut hog = memcg_squeeze(&squeezed.memory, 32, 48, 3);
    let mut fired = false;
    for _ in 0..40 {
        let text = daemon.scrape();
        if metric_value(&text, r#"enforcer_memory_pressure{class="offline"}"#) == Some(1.0) {
            fired = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    hog.wait_timeout(Duration::from_secs(15))
        .expect("stress-ng exits");
    assert!(fired, "offline memory pressure never signalled");
    let text = daemon.scrape();
    let stall = metric_value(
        &text,
        r#"enforcer_reclaim_stall_seconds_total{kind="memcg",class="offline"}"#,
    )
    .unwrap();
    let episodes = metric_value(
        &text,
        r#"enforcer_reclaim_episodes_total{kind="memcg",class="offline"}"#,
    )
    .unwrap();
    assert!(
        stall > 0.0 && episodes > 10.0,
        "offline memcg reclaim: {episodes} episodes, {stall} s"
    );
    let online = metric_value(
        &text,
        r#"enforcer_reclaim_episodes_total{kind="memcg",class="online"}"#,
    )
    .unwrap();
    assert_eq!(online, 0.0, "nothing charged to online");
    assert_eq!(
        metric_value(&text, r#"enforcer_memory_pressure{class="online"}"#),
        Some(0.0)
    );
}
