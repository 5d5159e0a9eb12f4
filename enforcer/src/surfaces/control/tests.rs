use std::{
    io::{Read as _, Write as _},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::*;
use crate::surfaces::metrics::tests_support::sample;

#[test]
fn requests_parse_with_or_without_their_newline() {
    for line in [
        &br#"{"request":"snapshot","limit":3}"#[..],
        br#"{"request":"snapshot","limit":3}
"#,
    ] {
        assert!(matches!(
            parse_request(line),
            Ok(Request::Snapshot { limit: Some(3) })
        ));
    }
    assert!(matches!(
        parse_request(br#"{"request":"tc","apply":true,"dry_run":false}"#),
        Ok(Request::Tc(TcRequest {
            apply: true,
            dry_run: false
        }))
    ));
}

#[test]
fn bad_requests_are_one_line_errors() {
    for line in [
        &b"garbage"[..],
        b"",
        b"\xff\xfe",
        b"{\"request\":\n\"nope\"}",
        b"{\"request\":\"snapshot\",\"limit\":-1}",
    ] {
        let err = parse_request(line).unwrap_err();
        assert!(err.starts_with("bad request: "), "{err}");
        assert!(!err.contains('\n'), "{err:?}");
    }
    let long = vec![b' '; MAX_REQUEST + 1];
    assert_eq!(
        parse_request(&long).unwrap_err(),
        "bad request: longer than 64 KiB"
    );
}

#[test]
fn only_root_may_ask() {
    assert_eq!(check_peer(0), Ok(()));
    let err = check_peer(1000).unwrap_err();
    assert_eq!(
        err,
        "permission denied: the control socket is root-only (peer uid 1000)"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_request_is_read_up_to_its_bound_and_no_further() {
    // An endless stream without a newline: the read stops at the bound.
    assert_eq!(
        block_on(read_request(tokio::io::repeat(b'a'))).unwrap(),
        Read::TooLong
    );
    // Exactly the bound, newline included, is a line.
    let mut at_bound = vec![b' '; MAX_REQUEST - 1];
    at_bound.push(b'\n');
    assert_eq!(
        block_on(read_request(&at_bound[..])).unwrap(),
        Read::Line(at_bound.clone())
    );
    // One line, whatever follows it.
    assert_eq!(
        block_on(read_request(&b"{}\nmore"[..])).unwrap(),
        Read::Line(b"{}\n".to_vec())
    );
    assert_eq!(block_on(read_request(&b""[..])).unwrap(), Read::Nothing);
}

/// A control server on a socket in a temporary directory, on its own runtime and thread
/// (as in the daemon); stopped when dropped.
struct Server {
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(limits: Limits) -> Server {
        Server::start_with(
            limits,
            Arc::new(sample),
            Arc::new(|_| Err("no tc here".into())),
        )
    }

    fn start_with(limits: Limits, source: SnapshotSource, tc: TcSource) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enforcer.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let listener = bind(&path).unwrap();
                ready.send(()).unwrap();
                tokio::select! {
                    _ = serve_with(listener, source, tc, limits) => {}
                    _ = stopped => {}
                }
            })
        });
        is_ready.recv().unwrap();
        Server {
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("enforcer.sock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn answer_of(stream: &mut UnixStream) -> Response {
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert_eq!(text.matches('\n').count(), 1, "one answer line: {text:?}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_stuck_client_delays_no_other_and_is_dropped_at_the_timeout() {
    // Generous against a loaded machine: the other client is answered well before.
    let limits = Limits {
        read: Duration::from_secs(1),
        write: Duration::from_secs(1),
    };
    let server = Server::start(limits);
    let started = Instant::now();
    // Connected, half a request, never a newline.
    let mut stuck = UnixStream::connect(server.path()).unwrap();
    stuck.write_all(br#"{"request":"snap"#).unwrap();

    let snapshot = super::snapshot(&server.path(), Some(1)).unwrap();
    assert_eq!(snapshot.cgroups.len(), 1);
    assert!(
        started.elapsed() < limits.read,
        "answered in {:?}, after the stuck client's timeout",
        started.elapsed()
    );

    // The stuck client is dropped (end of stream, no answer) once its time is up.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    stuck.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let dropped_after = started.elapsed();
    assert!(
        dropped_after >= limits.read && dropped_after < limits.read + Duration::from_secs(5),
        "dropped after {dropped_after:?}"
    );
}

#[test]
fn an_overlong_request_is_refused_over_the_socket() {
    let server = Server::start(Limits::default());
    let mut client = UnixStream::connect(server.path()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(&vec![b'{'; MAX_REQUEST + 1]).unwrap();
    match answer_of(&mut client) {
        Response::Error(e) => assert_eq!(e, "bad request: longer than 64 KiB"),
        other => panic!("{other:?}"),
    }
    // Garbage of a reasonable size gets its one-line error too.
    let mut client = UnixStream::connect(server.path()).unwrap();
    client.write_all(b"hello\n").unwrap();
    match answer_of(&mut client) {
        Response::Error(e) => assert!(e.starts_with("bad request: "), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A source that tells `entered` when it is called, then takes `hold` to answer.
fn slow<T: Send + 'static>(
    hold: Duration,
    answer: impl Fn() -> T + Send + Sync + 'static,
) -> (
    Arc<dyn Fn() -> T + Send + Sync>,
    std::sync::mpsc::Receiver<()>,
) {
    let (entered, is_entered) = std::sync::mpsc::channel();
    let entered = std::sync::Mutex::new(entered);
    let source = Arc::new(move || {
        entered.lock().unwrap().send(()).unwrap();
        std::thread::sleep(hold);
        answer()
    });
    (source, is_entered)
}

fn error_of(response: Result<Response, ControlError>) -> String {
    match response.unwrap() {
        Response::Error(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_tc_request_while_one_is_answered_is_busy() {
    // The pass takes 2 s: the second request comes well within it, even on a loaded machine.
    let (pass, entered) = slow(Duration::from_secs(2), || {
        Err::<TcReport, String>("pass done".into())
    });
    let tc: TcSource = Arc::new(move |_| pass());
    let server = Server::start_with(Limits::default(), Arc::new(sample), tc);
    let path = server.path();
    let ask = Request::Tc(TcRequest {
        apply: false,
        dry_run: false,
    });
    let first = std::thread::spawn({
        let path = path.clone();
        move || {
            error_of(request(
                &path,
                &Request::Tc(TcRequest {
                    apply: false,
                    dry_run: false,
                }),
            ))
        }
    });
    entered.recv().unwrap();
    let started = Instant::now();
    assert_eq!(
        error_of(request(&path, &ask)),
        "busy: another tc request is being answered; try again"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "busy at once"
    );
    assert_eq!(first.join().unwrap(), "pass done");
    // Once it is answered, the next one is answered too.
    assert_eq!(error_of(request(&path, &ask)), "pass done");
}

#[test]
fn requests_past_the_bound_on_answering_are_busy() {
    let (source, entered) = slow(Duration::from_secs(2), sample);
    let server = Server::start_with(
        Limits::default(),
        source,
        Arc::new(|_| Err("no tc here".into())),
    );
    let answering: Vec<_> = (0..MAX_ANSWERING)
        .map(|_| {
            let path = server.path();
            std::thread::spawn(move || super::snapshot(&path, Some(0)).is_ok())
        })
        .collect();
    for _ in 0..MAX_ANSWERING {
        entered.recv().unwrap();
    }
    assert_eq!(
        error_of(request(
            &server.path(),
            &Request::Snapshot { limit: Some(0) }
        )),
        "busy: 4 requests are being answered; try again"
    );
    for a in answering {
        assert!(a.join().unwrap());
    }
    // The permits are back.
    assert!(super::snapshot(&server.path(), Some(0)).is_ok());
}

/// What a client of uid `uid` is answered, connecting from a forked child that drops to
/// that uid. The child only makes async-signal-safe calls (the test process has threads):
/// everything it needs is prepared before the fork.
fn answer_to_uid(socket: &Path, uid: u32) -> String {
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = socket.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let request = b"{\"request\":\"snapshot\",\"limit\":0}\n";
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };
    let mut pipe = [0; 2];
    // SAFETY: a plain syscall on a local array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child calls only async-signal-safe functions on memory prepared above,
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            libc::close(pipe[0]);
            if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(11);
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
            let len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                libc::_exit(12);
            }
            libc::write(fd, request.as_ptr().cast(), request.len());
            let mut buf = [0u8; 512];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(pipe[1], buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end; the read end becomes a File we own.
    unsafe { libc::close(pipe[1]) };
    let mut out = String::new();
    let mut from_child = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(pipe[0]) };
    from_child.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: status {status:#x}"
    );
    out
}

#[test]
fn a_peer_that_is_not_root_is_refused_even_when_the_mode_lets_it_connect() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run as root (cargo xtask test does): the test drops a child to another uid"
    );
    let server = Server::start(Limits::default());
    // Open the directory and the socket to everyone: only the credential check is left.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(server.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = answer_to_uid(&server.path(), 65534);
    assert_eq!(refused.matches('\n').count(), 1, "{refused:?}");
    match serde_json::from_str::<Response>(&refused).unwrap() {
        Response::Error(e) => assert_eq!(
            e,
            "permission denied: the control socket is root-only (peer uid 65534)"
        ),
        other => panic!("{other:?}"),
    }
    // Root, on the same socket, is answered.
    assert!(super::snapshot(&server.path(), Some(0)).is_ok());
}
