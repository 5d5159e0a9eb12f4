//! Child processes that are killed and reaped when the guard drops.

use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command` as the leader of a new process group, so that the guard can kill
    /// everything it started (`timeout` and its child, a shell and its loop).
    pub fn spawn(mut command: Command) -> ChildGuard {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        ChildGuard { child: Some(child) }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("child").id() as i32
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    pub fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid()), signal);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child_mut().try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Takes the child out of the guard (the caller now owns its reaping).
    pub fn into_inner(mut self) -> Child {
        self.child.take().expect("child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
