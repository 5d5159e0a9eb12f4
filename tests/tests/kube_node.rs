//! The Node publisher against a local server that records every request: no API server can
//! run here, so this checks the exact requests (method, path, content type, body) that one
//! would get, and that each change is sent exactly once. The server is plain HTTP on
//! loopback, in a thread of this test, answering like the API server does for what the
//! publisher asks: GET the Node, PATCH it (a JSON merge patch, refused with 409 when its
//! resourceVersion is not the Node's), PATCH its status (a strategic merge of `conditions`
//! by `type`). It is not an API server: what it accepts is only what these requests need.
//! No root needed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use enforcer::{
    actuators::{
        Actuator,
        journal::{self, Journal, Outcome},
        kube::{GateState, Publisher, PublisherOptions},
    },
    model::{classify::RuleSet, layout::CgroupLayout},
    policy::{capacity::OfflineCapacity, ladder::Trigger},
};
use enforcer_tests::{TempDir, wait_until};
use serde_json::{Value, json};

const NODE: &str = "node-1";
const NODE_PATH: &str = "/api/v1/nodes/node-1";
const STATUS_PATH: &str = "/api/v1/nodes/node-1/status";
const TAINT: &str = "enforcer.io/offline-closed";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Without the query (`?fieldManager=enforcer`), which `query` has.
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

#[derive(Default)]
struct Server {
    node: Value,
    requests: Vec<Request>,
    /// Answer the next taint patch with 409, after another controller adds its taint.
    conflict_once: bool,
    /// Answer this many next requests with 503.
    unavailable: u32,
}

/// The recording server: its port and its state.
struct ApiServer {
    port: u16,
    state: Arc<Mutex<Server>>,
}

impl ApiServer {
    fn start(node: Value) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Server {
            node,
            ..Default::default()
        }));
        let shared = state.clone();
        // Ends with the test process; every connection gets its own thread (the client
        // keeps connections alive and may open more than one).
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        ApiServer { port, state }
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    fn node(&self) -> Value {
        self.state.lock().unwrap().node.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<Server>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut content_type = String::new();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-type" => content_type = value.trim().to_string(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (path, query) = target
            .split_once('?')
            .map(|(p, q)| (p.to_string(), q.to_string()))
            .unwrap_or((target.clone(), String::new()));
        let request = Request {
            method,
            path,
            query,
            content_type,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let (code, answer) = answer(&mut state.lock().unwrap(), request);
        let text = answer.to_string();
        let reason = match code {
            200 => "OK",
            404 => "Not Found",
            409 => "Conflict",
            _ => "Service Unavailable",
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

/// RFC 7386: objects merge, `null` deletes, anything else (lists too) replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn bump(node: &mut Value) {
    let rv: u64 = node["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    node["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

fn answer(s: &mut Server, r: Request) -> (u16, Value) {
    s.requests.push(r.clone());
    if s.unavailable > 0 {
        s.unavailable -= 1;
        return (503, status(503, "ServiceUnavailable", "the server is busy"));
    }
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", NODE_PATH) => (200, s.node.clone()),
        ("PATCH", NODE_PATH) => {
            assert_eq!(r.content_type, MERGE, "{r:?}");
            if s.conflict_once && r.body["spec"].get("taints").is_some() {
                s.conflict_once = false;
                // Another controller got there first: its taint, a new resourceVersion.
                s.node["spec"]["taints"]
                    .as_array_mut()
                    .expect("taints")
                    .push(json!({ "key": "other-controller", "effect": "PreferNoSchedule" }));
                bump(&mut s.node);
                return (
                    409,
                    status(
                        409,
                        "Conflict",
                        "Operation cannot be fulfilled on nodes \"node-1\": the object has been modified; please apply your changes to the latest version and try again",
                    ),
                );
            }
            if let Some(rv) = r.body["metadata"].get("resourceVersion")
                && *rv != s.node["metadata"]["resourceVersion"]
            {
                return (409, status(409, "Conflict", "the object has been modified"));
            }
            let mut patch = r.body.clone();
            if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            merge(&mut s.node, &patch);
            bump(&mut s.node);
            (200, s.node.clone())
        }
        ("PATCH", STATUS_PATH) => {
            assert_eq!(r.content_type, STRATEGIC, "{r:?}");
            // `conditions` merges by its key `type`; nothing else is sent.
            let conditions = s.node["status"]["conditions"]
                .as_array_mut()
                .expect("conditions");
            for c in r.body["status"]["conditions"].as_array().expect("a list") {
                match conditions.iter_mut().find(|x| x["type"] == c["type"]) {
                    Some(x) => merge(x, c),
                    None => conditions.push(c.clone()),
                }
            }
            bump(&mut s.node);
            (200, s.node.clone())
        }
        _ => (404, status(404, "NotFound", "not served here")),
    }
}

fn the_node() -> Value {
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {
            "name": NODE, "resourceVersion": "100",
            "labels": { "kubernetes.io/hostname": NODE },
            "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
        },
        "spec": { "taints": [ { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" } ] },
        "status": { "conditions": [
            { "type": "Ready", "status": "True", "reason": "KubeletReady",
              "message": "kubelet is posting ready status" },
        ]},
    })
}

fn start(server: &ApiServer) -> Publisher {
    let url = format!("http://127.0.0.1:{}", server.port);
    let config = kube::Config::new(url.parse().expect("a URI"));
    Publisher::start(
        config,
        PublisherOptions {
            node_name: NODE.into(),
            taint_key: TAINT.into(),
            min_patch_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
            dead_band: 0.05,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
        },
    )
    .expect("the publisher starts")
}

/// Waits until the worker has finished `passes` passes and returns the requests since
/// `from`. A pass's requests are all recorded before it counts as done.
fn after(server: &ApiServer, p: &Publisher, passes: u64, from: usize) -> Vec<Request> {
    assert!(
        wait_until(Duration::from_secs(10), || p.stats().status().passes
            >= passes),
        "the worker did not get to pass {passes}: {:?}",
        p.stats().status()
    );
    server.requests()[from..].to_vec()
}

/// Nothing is sent within a while (for the changes that must not be).
fn quiet(server: &ApiServer, from: usize) {
    std::thread::sleep(Duration::from_millis(700));
    let new = &server.requests()[from..];
    assert!(new.is_empty(), "nothing was to be sent: {new:#?}");
}

fn shape(r: &[Request]) -> Vec<(&str, &str, &str)> {
    r.iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.content_type.as_str()))
        .collect()
}

fn taint_keys(body: &Value) -> Vec<String> {
    body["spec"]["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap(),
                t["effect"].as_str().unwrap()
            )
        })
        .collect()
}

fn cpu(value: f64) -> GateState {
    GateState::new(
        false,
        Trigger::NodeCpu {
            value,
            threshold: 0.9,
        },
    )
}

#[test]
fn each_change_of_the_gate_and_the_capacity_is_one_patch_of_the_node() {
    let server = ApiServer::start(the_node());
    let p = start(&server);
    let mut passes = p.stats().status().passes;
    assert_eq!(
        server.requests().len(),
        0,
        "nothing is sent before a state is"
    );

    // Closing: the Node read, one taint patch (the foreign taint kept, the read's
    // resourceVersion with it), one condition patch on the status subresource.
    p.set_gate(cpu(0.95));
    passes += 1;
    let r = after(&server, &p, passes, 0);
    assert_eq!(
        shape(&r),
        [
            ("GET", NODE_PATH, ""),
            ("PATCH", NODE_PATH, MERGE),
            ("PATCH", STATUS_PATH, STRATEGIC),
        ],
        "{r:#?}"
    );
    assert!(
        r[1..]
            .iter()
            .all(|r| r.query.split('&').any(|q| q == "fieldManager=enforcer")),
        "{r:#?}"
    );
    assert_eq!(
        r[1].body,
        json!({
            "metadata": { "resourceVersion": "100" },
            "spec": { "taints": [
                { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" },
                { "key": TAINT, "effect": "NoSchedule" },
            ]},
        })
    );
    let c = &r[2].body["status"]["conditions"];
    assert_eq!(c.as_array().unwrap().len(), 1, "only our condition: {c}");
    assert_eq!(c[0]["type"], "EnforcerOfflineClosed");
    assert_eq!(c[0]["status"], "True");
    assert_eq!(c[0]["reason"], "NodeCpu");
    assert!(
        c[0]["message"].as_str().unwrap().contains("95.0%"),
        "the message names the trigger: {c}"
    );
    let node = server.node();
    assert_eq!(
        node["status"]["conditions"][0]["type"], "Ready",
        "kubelet's kept"
    );
    assert!(p.stats().status().up);

    // The same state again: nothing.
    let seen = server.requests().len();
    p.set_gate(cpu(0.95));
    quiet(&server, seen);

    // Opening: only our taint removed, the condition False.
    p.set_gate(GateState::new(true, Trigger::Recovered));
    passes += 1;
    let r = after(&server, &p, passes, seen);
    assert_eq!(
        shape(&r),
        [
            ("GET", NODE_PATH, ""),
            ("PATCH", NODE_PATH, MERGE),
            ("PATCH", STATUS_PATH, STRATEGIC),
        ],
        "{r:#?}"
    );
    assert_eq!(taint_keys(&r[1].body), ["dedicated:NoSchedule"]);
    assert_eq!(r[1].body["metadata"]["resourceVersion"], "102");
    let c = &r[2].body["status"]["conditions"][0];
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("False"), &json!("Recovered"))
    );

    // The capacity: one annotation patch on the metadata.
    let seen = server.requests().len();
    p.set_capacity(OfflineCapacity {
        cpu_cores: 12.5,
        memory_bytes: 100 << 30,
    });
    passes += 1;
    let r = after(&server, &p, passes, seen);
    assert_eq!(shape(&r), [("PATCH", NODE_PATH, MERGE)], "{r:#?}");
    assert_eq!(
        r[0].body,
        json!({ "metadata": { "annotations": {
            "enforcer.io/offline-cpu": "12.5",
            "enforcer.io/offline-memory": "107374182400",
        }}})
    );
    let node = server.node();
    assert_eq!(
        node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"],
        "0"
    );

    // Within the dead band (4%, 2%): nothing.
    let seen = server.requests().len();
    p.set_capacity(OfflineCapacity {
        cpu_cores: 13.0,
        memory_bytes: 102 << 30,
    });
    passes += 1;
    assert!(after(&server, &p, passes, seen).is_empty());
    quiet(&server, seen);

    // Beyond it: one patch (once the rate limit lets it go).
    p.set_capacity(OfflineCapacity {
        cpu_cores: 10.0,
        memory_bytes: 100 << 30,
    });
    assert!(
        wait_until(Duration::from_secs(5), || server.requests().len() > seen),
        "the capacity beyond the dead band was never sent"
    );
    quiet(&server, seen + 1);
    let r = &server.requests()[seen..];
    assert_eq!(shape(r), [("PATCH", NODE_PATH, MERGE)], "{r:#?}");
    assert_eq!(
        r[0].body["metadata"]["annotations"]["enforcer.io/offline-cpu"],
        "10"
    );

    // Closing again, and the Node changes under the first patch: 409, read again, sent
    // again once, with the other controller's taint kept.
    server.state.lock().unwrap().conflict_once = true;
    let seen = server.requests().len();
    let passes = p.stats().status().passes + 1;
    p.set_gate(GateState::new(
        false,
        Trigger::DirectReclaim {
            stall_per_second: 0.2,
            threshold: 0.05,
        },
    ));
    let r = after(&server, &p, passes, seen);
    assert_eq!(
        shape(&r),
        [
            ("GET", NODE_PATH, ""),
            ("PATCH", NODE_PATH, MERGE),
            ("GET", NODE_PATH, ""),
            ("PATCH", NODE_PATH, MERGE),
            ("PATCH", STATUS_PATH, STRATEGIC),
        ],
        "{r:#?}"
    );
    let first_rv = r[1].body["metadata"]["resourceVersion"].clone();
    let second_rv = r[3].body["metadata"]["resourceVersion"].clone();
    assert_ne!(
        first_rv, second_rv,
        "the retry carries the new resourceVersion"
    );
    assert_eq!(
        taint_keys(&r[3].body),
        [
            "dedicated:NoSchedule",
            "other-controller:PreferNoSchedule",
            &format!("{TAINT}:NoSchedule"),
        ]
    );
    assert_eq!(
        r[4].body["status"]["conditions"][0]["reason"],
        "DirectReclaim"
    );
    let status = p.stats().status();
    assert_eq!(
        (
            status.taint_patches,
            status.condition_patches,
            status.capacity_patches,
            status.conflicts,
            status.failures,
        ),
        (3, 3, 2, 1, 0),
        "{status:?}"
    );
    assert_eq!(
        taint_keys(&server.node()),
        [
            "dedicated:NoSchedule",
            "other-controller:PreferNoSchedule",
            &format!("{TAINT}:NoSchedule"),
        ]
    );

    // Stopping with everything on the Node: nothing more is sent, and the drop is quick.
    let seen = server.requests().len();
    let t = std::time::Instant::now();
    drop(p);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(server.requests().len(), seen);
}

#[test]
fn a_failing_api_server_is_retried_with_backoff_and_the_change_sent_once() {
    let server = ApiServer::start(the_node());
    server.state.lock().unwrap().unavailable = 2;
    let p = start(&server);
    p.set_gate(cpu(0.97));
    assert!(
        wait_until(Duration::from_secs(10), || p.stats().status().taint_patches
            == 1),
        "never sent: {:?} {:#?}",
        p.stats().status(),
        server.requests()
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = p.stats().status();
    assert_eq!(status.failures, 2, "{status:?}");
    assert!(status.up && status.last_error.is_none(), "{status:?}");
    let r = server.requests();
    // Two refused reads, a read that is answered, the taint, the condition.
    assert_eq!(
        shape(&r),
        [
            ("GET", NODE_PATH, ""),
            ("GET", NODE_PATH, ""),
            ("GET", NODE_PATH, ""),
            ("PATCH", NODE_PATH, MERGE),
            ("PATCH", STATUS_PATH, STRATEGIC),
        ],
        "{r:#?}"
    );

    // While it fails, the error is said and up is 0; the state is sent when it answers.
    server.state.lock().unwrap().unavailable = 1;
    p.set_gate(GateState::new(true, Trigger::Recovered));
    assert!(wait_until(Duration::from_secs(10), || {
        p.stats().status().condition_patches == 2
    }));
    let status = p.stats().status();
    assert_eq!(
        (status.failures, status.condition_patches),
        (3, 2),
        "{status:?}"
    );
    assert_eq!(taint_keys(&server.node()), ["dedicated:NoSchedule"]);
}

#[test]
fn an_unreachable_api_server_never_holds_the_caller() {
    // A port nothing listens on: every request fails at once, the caller never waits.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = ApiServer {
        port,
        state: Default::default(),
    };
    let p = start(&server);
    let t = std::time::Instant::now();
    for i in 0..1000 {
        p.set_gate(cpu(0.9 + f64::from(i % 7) / 100.0));
        p.set_capacity(OfflineCapacity {
            cpu_cores: f64::from(i),
            memory_bytes: 1 << 30,
        });
    }
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(10), || p
        .stats()
        .status()
        .failures
        >= 1));
    let status = p.stats().status();
    assert!(!status.up, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("reading the Node")),
        "{status:?}"
    );
}

#[test]
fn the_choke_point_writes_the_gate_file_then_queues_the_node() {
    let server = ApiServer::start(the_node());
    let dir = TempDir::new("enforcer-kube-gate");
    let journal_path = dir.path().join("journal.jsonl");
    let mut actuator = Actuator::new(
        CgroupLayout::discover().expect("layout"),
        Arc::new(RuleSet::defaults()),
        Journal::open(&journal_path).unwrap(),
        false,
    )
    .with_gate_file(dir.path())
    .with_kube(start(&server));
    let trigger = Trigger::NodeMemory {
        value: 0.93,
        threshold: 0.9,
    };
    let t = std::time::Instant::now();
    let outcome = actuator.scheduling_gate("gate", false, trigger).unwrap();
    assert_eq!(outcome, Outcome::Applied);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "the choke point waited for the API server: {:?}",
        t.elapsed()
    );
    let gate = std::fs::read_to_string(dir.path().join("scheduling")).unwrap();
    assert!(gate.starts_with("closed "), "{gate}");
    let entries = journal::read(&journal_path).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.action, "stop_scheduling");
    assert_eq!(last.detail.as_deref(), Some("node taint queued"));
    assert!(wait_until(Duration::from_secs(10), || {
        server
            .requests()
            .iter()
            .any(|r| r.path == STATUS_PATH && r.method == "PATCH")
    }));
    let node = server.node();
    assert_eq!(
        taint_keys(&node),
        ["dedicated:NoSchedule", &format!("{TAINT}:NoSchedule")]
    );
    let ours = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "EnforcerOfflineClosed")
        .cloned()
        .expect("our condition");
    assert_eq!(
        (&ours["status"], &ours["reason"]),
        (&json!("True"), &json!("NodeMemory"))
    );

    // The capacity through the choke point too; a dry run would publish nothing.
    actuator.publish_capacity(OfflineCapacity {
        cpu_cores: 3.0,
        memory_bytes: 1 << 30,
    });
    assert!(wait_until(Duration::from_secs(10), || {
        server.node()["metadata"]["annotations"]["enforcer.io/offline-cpu"] == "3"
    }));

    // Dropped (the daemon stopping) right after reopening: the reopening still reaches the
    // Node before the drop returns.
    actuator
        .scheduling_gate("normal", true, Trigger::Shutdown)
        .unwrap();
    drop(actuator);
    assert_eq!(taint_keys(&server.node()), ["dedicated:NoSchedule"]);
}
