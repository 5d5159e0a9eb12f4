//! Project tasks: `cargo xtask setup | build | image | run | test | bench | fuzz | layers |
//! vmtest`.

mod cmd;
mod fuzz;
mod image;
mod layers;
mod setup;
mod vm;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::cmd::command;

#[derive(Parser)]
#[command(name = "xtask", about = "enforcer's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (nightly rust-src, bpf-linker, Debian packages).
    Setup,
    /// Set up and build the release binary (target/release/enforcer).
    Build,
    /// Set up, build the static release binary and write the container image as an OCI
    /// archive (target/image/enforcer-<version>.oci.tar); prints its digest.
    Image,
    /// Set up, build, and run the daemon (as root): `cargo xtask run -- --config FILE`.
    Run {
        /// Arguments after `enforcer run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then fmt, clippy, unit tests, the fuzz targets (briefly) and the privileged
    /// integration tests (as root).
    Test,
    /// Set up, build and run the benchmarks (as root): `cargo xtask bench -- [overhead|tick|idle]`.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every fuzz target (fuzz/) for a while; `cargo xtask test` runs them
    /// for the default time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::SECONDS_PER_TARGET)]
        seconds: u32,
    },
    /// Boot Debian kernels under qemu with a chosen cgroup layout and run the
    /// layout-independent integration suites inside (as root).
    Vmtest {
        /// 6.1, 6.12, newest or all (repeatable).
        #[arg(long = "kernel", default_value = "6.12")]
        kernels: Vec<String>,
        /// The cgroup layout (repeatable).
        #[arg(long = "cgroup", value_enum, default_value = "v2")]
        layouts: Vec<vm::Layout>,
        /// The suites (tests/tests/*.rs) to run; default: the layout-independent ones.
        #[arg(long = "suite")]
        suites: Vec<String>,
    },
    /// Check enforcer's module layering (no upward import, no circle); exit 1 on a violation.
    Layers {
        /// Also print every file-level module edge.
        #[arg(long)]
        graph: bool,
    },
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> std::process::Command {
    let mut c = command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(args).current_dir(workspace());
    c
}

fn step(name: &str, c: std::process::Command) -> anyhow::Result<()> {
    println!("\n==> {name}");
    cmd::run(c).with_context(|| format!("step `{name}` failed"))
}

/// The layer check of enforcer/src, in-process.
fn layer_check(graph: bool) -> anyhow::Result<()> {
    let src = Path::new("enforcer/src");
    layers::run(&workspace().join(src), src, graph)
}

fn release_bin(name: &str) -> PathBuf {
    workspace().join("target/release").join(name)
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !cmd::is_root() {
        bail!("{what} needs root (eBPF programs, cgroups, network namespaces): run it as root");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse().task) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => {
            setup::run(setup::Setup {
                packages: true,
                fuzz: true,
            })?;
            vm::install::ensure()
        }
        Task::Build => {
            setup::run(setup::Setup {
                packages: false,
                fuzz: false,
            })?;
            step("build", cargo(&["build", "--release", "-p", "enforcer"]))?;
            println!("{}", release_bin("enforcer").display());
            Ok(())
        }
        Task::Image => {
            setup::run(setup::Setup {
                packages: false,
                fuzz: false,
            })?;
            image::run(&workspace())
        }
        Task::Run { args } => {
            require_root("enforcer run")?;
            setup::run(setup::Setup {
                packages: false,
                fuzz: false,
            })?;
            step("build", cargo(&["build", "--release", "-p", "enforcer"]))?;
            let mut c = command(release_bin("enforcer"));
            c.arg("run").args(args);
            // Replace this process so that signals go straight to the daemon.
            Err(c.exec()).context("cannot exec target/release/enforcer")
        }
        Task::Test => {
            require_root("the test suite")?;
            setup::run(setup::Setup {
                packages: true,
                fuzz: true,
            })?;
            step(
                "cargo fmt --check",
                cargo(&["fmt", "--all", "--", "--check"]),
            )?;
            // The fuzz targets are their own workspace, which `--all` does not reach.
            step(
                "cargo fmt --check (fuzz/)",
                cargo(&["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]),
            )?;
            println!("\n==> layer check");
            layer_check(false).context("step `layer check` failed")?;
            // Default members only: the eBPF crate builds for bpfel-unknown-none, through
            // enforcer's build script, never for the host.
            step(
                "cargo clippy",
                cargo(&[
                    "clippy",
                    "--release",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]),
            )?;
            step(
                "build enforcer",
                cargo(&["build", "--release", "-p", "enforcer", "--bins"]),
            )?;
            step(
                "unit tests",
                cargo(&[
                    "test",
                    "--release",
                    "-p",
                    "enforcer",
                    "-p",
                    "enforcer-common",
                    "-p",
                    "xtask",
                    "-p",
                    "enforcer-bench",
                ]),
            )?;
            println!("\n==> fuzz targets");
            fuzz::run_all(&workspace(), fuzz::SECONDS_PER_TARGET)
                .context("step `fuzz targets` failed")?;
            let mut integration = cargo(&[
                "test",
                "--release",
                "-p",
                "enforcer-tests",
                "--",
                "--test-threads=1",
            ]);
            integration.env("ENFORCER_BIN", release_bin("enforcer"));
            step("privileged integration tests (real kernel)", integration)?;
            // The kernels and cgroup layouts the fleet runs, each in a qemu guest: pure
            // cgroup2 and pure v1 on the oldest (6.1), trixie's 6.12 and the newest.
            println!("\n==> VM matrix (cargo xtask vmtest --kernel all --cgroup v2 --cgroup v1)");
            let cells = vm::run(
                &workspace(),
                &release_bin("enforcer"),
                &["all".to_string()],
                &[vm::Layout::V2, vm::Layout::V1],
                &vm::SUITES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )?;
            let failed = cells.iter().filter(|c| !c.passed).count();
            if failed > 0 {
                bail!("step `VM matrix` failed: {failed} of {} cells", cells.len());
            }
            Ok(())
        }
        Task::Bench { args } => {
            require_root("the benchmarks")?;
            setup::run(setup::Setup {
                packages: true,
                fuzz: false,
            })?;
            step(
                "build",
                cargo(&[
                    "build",
                    "--release",
                    "-p",
                    "enforcer",
                    "-p",
                    "enforcer-bench",
                ]),
            )?;
            let mut c = command(release_bin("enforcer-bench"));
            c.args(args).env("ENFORCER_BIN", release_bin("enforcer"));
            step("benchmarks", c)
        }
        Task::Fuzz { seconds } => {
            setup::run(setup::Setup {
                packages: false,
                fuzz: true,
            })?;
            fuzz::run_all(&workspace(), seconds)
        }
        Task::Layers { graph } => layer_check(graph),
        Task::Vmtest {
            kernels,
            layouts,
            suites,
        } => {
            require_root("the VM matrix")?;
            setup::run(setup::Setup {
                packages: true,
                fuzz: false,
            })?;
            step(
                "build enforcer",
                cargo(&["build", "--release", "-p", "enforcer", "--bins"]),
            )?;
            let suites = if suites.is_empty() {
                vm::SUITES.iter().map(|s| s.to_string()).collect()
            } else {
                suites
            };
            let cells = vm::run(
                &workspace(),
                &release_bin("enforcer"),
                &kernels,
                &layouts,
                &suites,
            )?;
            let failed = cells.iter().filter(|c| !c.passed).count();
            if failed > 0 {
                bail!("vm matrix: {failed} of {} cells failed", cells.len());
            }
            Ok(())
        }
    }
}
