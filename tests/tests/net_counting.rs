//! Per-cgroup network counting: a process in a test cgroup sending (and receiving) a known
//! number of bytes is counted within 1% by the cgroup_skb programs, and loopback traffic is
//! not counted.
//!
//! Traffic runs only between two network namespaces this test makes, joined by a veth pair
//! (MTU 65000 so that headers are a tiny share of the bytes); every load is bounded by
//! `timeout` or a socket timeout.
//!
//! The payload is moved by `bash` (`/dev/tcp`) in the test cgroup against a socket this test
//! holds in the other namespace and reads to EOF (or writes in full): the bytes are then
//! known exactly. iperf3 is not used for that: its server stops reading at the end of the
//! test while data may still be in flight, and the RST discards megabytes the client "sent".

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use enforcer::sampling::{
    net::NetSampler,
    programs::{ProgramOptions, Programs, SamplerError},
};
use enforcer_common::{CgroupMode, NetCounters, PROG_NET_EGRESS};
use enforcer_tests::{
    cgroup::{TestCgroup, mount_point, spawn_in},
    netns::Netns,
    process::ChildGuard,
    require_root, unique_name,
};

const PAYLOAD_BYTES: u64 = 20 * 1024 * 1024;
const SENDER_ADDR: &str = "10.213.7.1";
const PEER_ADDR: &str = "10.213.7.2";

fn within(actual: u64, expected: u64, tolerance: f64) -> bool {
    (actual as f64 - expected as f64).abs() <= expected as f64 * tolerance
}

fn load(network: bool) -> Programs {
    let unified = mount_point("unified").expect("this host has a cgroup2 hierarchy");
    Programs::load(&ProgramOptions {
        cpu_mode: CgroupMode::V1Cpu,
        memory_mode: CgroupMode::V1Cpu,
        cgroup_map_entries: 16_384,
        network: network.then_some(unified),
    })
    .expect("load programs")
}

fn counters(sampler: &mut NetSampler, cgroup: &TestCgroup) -> NetCounters {
    let reading = sampler.read().expect("read NET_BYTES");
    reading
        .per_cgroup
        .get(&cgroup.id())
        .copied()
        .unwrap_or_default()
}

/// `stats64.{tx,rx}.bytes` of `dev` in `ns`, from `ip -j -s link`: the kernel's own interface
/// counters, an observer independent of our programs.
fn link_bytes(ns: &Netns, dev: &str) -> (u64, u64) {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-j", "-s", "link", "show", "dev", dev])
        .output()
        .expect("run ip -j -s link");
    assert!(out.status.success(), "ip -j -s link show {dev} failed");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let get = |dir: &str| {
        json[0]["stats64"][dir]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats64.{dir}.bytes in {json}"))
    };
    (get("tx"), get("rx"))
}

/// A listening socket bound inside `ns`: made by a thread that joined the namespace (a
/// socket stays in the namespace it was created in), used from this one.
fn listen_in(ns: &Netns, addr: &str, port: u16) -> TcpListener {
    let path = format!("/run/netns/{}", ns.name());
    let addr = format!("{addr}:{port}");
    std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
    })
    .join()
    .expect("listener thread")
}

/// Accepts one connection within 10 s; reads and writes then time out after 30 s.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("read timeout");
                stream
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .expect("write timeout");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection within 10 s");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The CPU both ends of a transfer run on. On a veth a packet is queued to the backlog of
/// the CPU that sent it: a sender that migrates (or transmits from the softirq of an ACK
/// received on another CPU) reorders its own segments, and TCP retransmits them spuriously
/// (DSACK). Those bytes are real and counted (by us and by the interface alike), but they
/// would blur the comparison with the payload; one CPU keeps the stream in order.
const TRANSFER_CPU: &str = "0";

/// Pins the calling thread to [`TRANSFER_CPU`] until dropped (the thread may run the next
/// test: its affinity is given back).
struct Pinned(nix::sched::CpuSet);

impl Pinned {
    fn here() -> Pinned {
        let this = nix::unistd::Pid::from_raw(0);
        let old = nix::sched::sched_getaffinity(this).expect("sched_getaffinity");
        let mut set = nix::sched::CpuSet::new();
        set.set(TRANSFER_CPU.parse().expect("cpu"))
            .expect("cpu set");
        nix::sched::sched_setaffinity(this, &set).expect("sched_setaffinity");
        Pinned(old)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0);
    }
}

/// `bash -c SCRIPT` in `ns` with its process in `cgroup` and on [`TRANSFER_CPU`], bounded by
/// `timeout`.
fn bash_in(ns: &Netns, cgroup: &TestCgroup, script: &str) -> ChildGuard {
    let mut cmd = ns.command("timeout");
    cmd.args(["60", "taskset", "-c", TRANSFER_CPU, "bash", "-c", script]);
    cmd.stdout(std::process::Stdio::piped());
    spawn_in(&[cgroup], cmd)
}

/// Waits for `child` and returns its stdout, asserting it succeeded.
fn finish(child: ChildGuard, what: &str) -> String {
    let out = child
        .into_inner()
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-test iperf3 server in `ns`, bound to `bind`, its process in `cgroup`.
fn iperf3_server(ns: &Netns, cgroup: &TestCgroup, bind: &str, port: u16) -> ChildGuard {
    let mut cmd = ns.command("timeout");
    cmd.args([
        "60",
        "iperf3",
        "-s",
        "-1",
        "-B",
        bind,
        "-p",
        &port.to_string(),
    ]);
    cmd.stdout(std::process::Stdio::null());
    let server = spawn_in(&[cgroup], cmd);
    for _ in 0..250 {
        let out = ns
            .command("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("run ss");
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "iperf3 does not listen on port {port} in {} after 5 s",
        ns.name()
    );
}

#[test]
fn cgroup_traffic_is_counted_within_one_percent_and_loopback_is_not() {
    require_root();
    let mut programs = load(true);
    let mut sampler = programs.net_sampler().expect("net sampler");
    assert!(programs.classifier_fd().is_some(), "net_classify is loaded");
    assert!(programs.classifier_id().is_some(), "net_classify has an id");

    let cg = TestCgroup::create("unified", &unique_name("enf-net"));
    let a = Netns::create(&unique_name("enf-net-a"));
    let b = Netns::create(&unique_name("enf-net-b"));
    // Created inside the test's namespaces: the names cannot clash with the host's.
    a.ip(&[
        "link",
        "add",
        "veth-a",
        "mtu",
        "65000",
        "type",
        "veth",
        "peer",
        "name",
        "veth-b",
        "mtu",
        "65000",
        "netns",
        b.name(),
    ]);
    a.ip(&["addr", "add", &format!("{SENDER_ADDR}/24"), "dev", "veth-a"]);
    b.ip(&["addr", "add", &format!("{PEER_ADDR}/24"), "dev", "veth-b"]);
    for ns in [&a, &b] {
        ns.ip(&["link", "set", "lo", "up"]);
    }
    a.ip(&["link", "set", "veth-a", "up"]);
    b.ip(&["link", "set", "veth-b", "up"]);

    let _pinned = Pinned::here();

    // Send: bash in the cgroup writes the payload; we read it to EOF on the other side.
    let listener = listen_in(&b, PEER_ADDR, 5201);
    let before = counters(&mut sampler, &cg);
    let (link_tx_before, _) = link_bytes(&a, "veth-a");
    let sender = bash_in(
        &a,
        &cg,
        &format!("head -c {PAYLOAD_BYTES} /dev/zero > /dev/tcp/{PEER_ADDR}/5201"),
    );
    let mut received = 0u64;
    let mut stream = accept(&listener);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut buf).expect("read the payload") {
            0 => break,
            n => received += n as u64,
        }
    }
    finish(sender, "sender");
    // EOF came after every data segment: all of them went through the egress hook.
    let after = counters(&mut sampler, &cg);
    let (link_tx_after, _) = link_bytes(&a, "veth-a");
    let ebpf_tx = after.tx_bytes - before.tx_bytes;
    let link_tx = link_tx_after - link_tx_before;
    eprintln!(
        "send: payload {PAYLOAD_BYTES} B, peer read {received} B; eBPF tx {ebpf_tx} B in {} \
         packets ({:+.3}% of payload); veth-a tx counter {link_tx} B",
        after.tx_packets - before.tx_packets,
        (ebpf_tx as f64 / PAYLOAD_BYTES as f64 - 1.0) * 100.0,
    );
    // Zero unless kernel.bpf_stats_enabled=1; printed for the overhead figure.
    if let Some((time, runs)) = programs
        .program_stats(PROG_NET_EGRESS)
        .filter(|(_, runs)| *runs > 0)
    {
        eprintln!(
            "net_egress: {runs} runs, {} ns/run (bpf_stats)",
            time.as_nanos() / u128::from(runs)
        );
    }
    assert_eq!(received, PAYLOAD_BYTES, "the peer got the whole payload");
    assert!(
        within(ebpf_tx, PAYLOAD_BYTES, 0.01),
        "eBPF tx {ebpf_tx} B vs payload {PAYLOAD_BYTES} B"
    );
    assert!(
        within(ebpf_tx, link_tx, 0.01),
        "eBPF tx {ebpf_tx} B vs veth-a tx counter {link_tx} B"
    );

    // Receive: bash in the cgroup reads to EOF what we write in full.
    let listener = listen_in(&b, PEER_ADDR, 5202);
    let before = counters(&mut sampler, &cg);
    let (_, link_rx_before) = link_bytes(&a, "veth-a");
    let receiver = bash_in(&a, &cg, &format!("wc -c < /dev/tcp/{PEER_ADDR}/5202"));
    let mut stream = accept(&listener);
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..PAYLOAD_BYTES / chunk.len() as u64 {
        stream.write_all(&chunk).expect("write the payload");
    }
    drop(stream);
    let counted: u64 = finish(receiver, "receiver")
        .trim()
        .parse()
        .expect("wc -c output");
    let after = counters(&mut sampler, &cg);
    let (_, link_rx_after) = link_bytes(&a, "veth-a");
    let ebpf_rx = after.rx_bytes - before.rx_bytes;
    let link_rx = link_rx_after - link_rx_before;
    eprintln!(
        "receive: payload {PAYLOAD_BYTES} B, wc -c {counted} B; eBPF rx {ebpf_rx} B in {} \
         packets ({:+.3}% of payload); veth-a rx counter {link_rx} B",
        after.rx_packets - before.rx_packets,
        (ebpf_rx as f64 / PAYLOAD_BYTES as f64 - 1.0) * 100.0,
    );
    assert_eq!(counted, PAYLOAD_BYTES, "the cgroup got the whole payload");
    assert!(
        within(ebpf_rx, PAYLOAD_BYTES, 0.01),
        "eBPF rx {ebpf_rx} B vs payload {PAYLOAD_BYTES} B"
    );
    assert!(
        within(ebpf_rx, link_rx, 0.01),
        "eBPF rx {ebpf_rx} B vs veth-a rx counter {link_rx} B"
    );

    // Loopback, both ends in the cgroup: nothing is counted (and it shows the egress hook
    // sees the outgoing device: lo skipped above, veth-a counted).
    let before = counters(&mut sampler, &cg);
    let server = iperf3_server(&a, &cg, "127.0.0.1", 5203);
    let mut client = a.command("timeout");
    client.args(["60", "iperf3", "-c", "127.0.0.1", "-p", "5203", "-n", "20M"]);
    client.stdout(std::process::Stdio::null());
    finish(spawn_in(&[&cg], client), "iperf3 over lo");
    drop(server);
    std::thread::sleep(Duration::from_millis(100));
    let after = counters(&mut sampler, &cg);
    let added = (after.tx_bytes - before.tx_bytes) + (after.rx_bytes - before.rx_bytes);
    eprintln!("loopback: iperf3 -n 20M over lo; eBPF added {added} B (tx + rx)");
    assert!(
        (added as f64) < PAYLOAD_BYTES as f64 * 0.01,
        "loopback traffic was counted: {added} B"
    );
}

#[test]
fn classifier_map_sync_only_writes_differences() {
    require_root();
    let mut programs = load(true);
    let mut classifier = programs.net_classifier().expect("net classifier");
    assert!(
        matches!(programs.net_classifier(), Err(SamplerError::Missing(_))),
        "the map is handed out once"
    );
    let mut wanted: std::collections::HashMap<u64, u32> =
        [(101, 0x1_0010), (102, 0x1_0020), (103, 0x1_0030)].into();
    assert_eq!(classifier.sync(&wanted).unwrap(), 3);
    assert_eq!(classifier.sync(&wanted).unwrap(), 0);
    wanted.insert(102, 0x1_0040);
    wanted.remove(&103);
    assert_eq!(classifier.sync(&wanted).unwrap(), 2);
    assert_eq!(
        classifier.sync(&std::collections::HashMap::new()).unwrap(),
        2
    );
}

#[test]
fn without_a_network_mount_nothing_network_is_loaded() {
    require_root();
    let mut programs = load(false);
    assert!(matches!(
        programs.net_sampler(),
        Err(SamplerError::NetworkDisabled)
    ));
    assert!(matches!(
        programs.net_classifier(),
        Err(SamplerError::NetworkDisabled)
    ));
    assert!(programs.classifier_fd().is_none());
    assert!(programs.classifier_id().is_none());
}

/// The daemon reads the map every 100 ms tick with thousands of cgroups: the batched reader
/// must stay cheap and must lay out the per-CPU values right. The entries are written through
/// a second handle on the loaded map (found by name; the newest is ours).
#[test]
fn reading_thousands_of_cgroups_in_batches_sums_every_cpu() {
    use aya::maps::{Map, MapData, PerCpuHashMap, PerCpuValues};

    require_root();
    let mut programs = load(true);
    let mut sampler = programs.net_sampler().expect("net sampler");
    let id = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter(|m| m.name_as_str() == Some(enforcer_common::MAP_NET))
        .map(|m| m.id())
        .max()
        .expect("the NET_BYTES map is loaded");
    let mut map: PerCpuHashMap<MapData, u64, NetCounters> =
        PerCpuHashMap::try_from(Map::PerCpuHashMap(MapData::from_id(id).expect("open map")))
            .expect("a per-CPU hash");
    let cpus = aya::util::nr_cpus().expect("possible CPUs");
    // Keys far above any real cgroup id on a test host.
    const BASE: u64 = 1 << 60;
    const ENTRIES: u64 = 2_000;
    for key in BASE..BASE + ENTRIES {
        let values: Vec<NetCounters> = (0..cpus as u64)
            .map(|cpu| NetCounters {
                rx_bytes: key - BASE,
                rx_packets: cpu + 1,
                tx_bytes: 1_000,
                tx_packets: 1,
            })
            .collect();
        let values = PerCpuValues::try_from(values).expect("one value per CPU");
        map.insert(key, values, 0).expect("insert");
    }
    let mut best = std::time::Duration::MAX;
    let mut reading = sampler.read().expect("read");
    for _ in 0..10 {
        reading = sampler.read().expect("read");
        best = best.min(reading.read_duration);
    }
    let cpus = cpus as u64;
    for key in BASE..BASE + ENTRIES {
        let got = reading.per_cgroup.get(&key).copied();
        let want = NetCounters {
            rx_bytes: (key - BASE) * cpus,
            rx_packets: cpus * (cpus + 1) / 2,
            tx_bytes: 1_000 * cpus,
            tx_packets: cpus,
        };
        assert_eq!(got, Some(want), "entry {key:#x}");
    }
    eprintln!(
        "read {} entries ({ENTRIES} planted, {cpus} possible CPUs) in {best:?} (best of 10)",
        reading.per_cgroup.len()
    );
    // How long the batched read takes is printed, not asserted (a test holds correctness;
    // what it costs is `bench/`'s to measure, side by side): under the VM matrix's
    // emulation it is ten times what it is natively.
    sampler.forget(BASE..BASE + ENTRIES);
    let left = sampler.read().expect("read");
    assert!(
        left.per_cgroup.keys().all(|k| *k < BASE),
        "forget removed them"
    );
}
