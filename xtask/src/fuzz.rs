//! The fuzz step of `cargo xtask test`: every cargo-fuzz target of `fuzz/` for a bounded
//! time, from its checked-in seeds. A crash (a panic, a hang past the per-input timeout,
//! memory past libFuzzer's limit) fails the step and names the reproducer libFuzzer wrote.

use std::{
    collections::BTreeSet,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

use crate::cmd::{self, command};

/// How long each target runs in `cargo xtask test` (`cargo xtask fuzz --seconds N` runs
/// them longer). CI has 90 minutes for everything and the rest of the suite
/// takes about 10; seven targets at 40 s are under 5 minutes more (building them the first
/// time, with the instrumented dependencies, takes longer than running them).
pub const SECONDS_PER_TARGET: u32 = 40;

/// An input that takes longer than this is reported as a hang (a parser must be fast).
const SECONDS_PER_INPUT: u32 = 10;

/// No sanitizer: the parsers and what they call are safe Rust, where an out-of-bounds
/// access is already a panic, and AddressSanitizer would halve the inputs each target
/// tries in its time. Debug assertions on: an arithmetic overflow, which a release build
/// wraps silently (a wrong offset, a wrong minute), fails as the panic it is.
const FLAGS: &[&str] = &["--sanitizer", "none", "--debug-assertions"];

/// `cargo fuzz` with the nightly toolchain (libFuzzer's instrumentation needs it), not the
/// stable cargo that runs xtask.
fn cargo_fuzz(workspace: &Path) -> Command {
    let mut c = command("rustup");
    c.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(workspace);
    for inherited in ["CARGO", "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"] {
        c.env_remove(inherited);
    }
    c
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// What a failed run's log says of the failure: from the first line that reports it
/// (a panic, libFuzzer's own report of a hang or of memory), or the last lines.
fn failure_excerpt(log: &Path) -> String {
    const MARKS: &[&str] = &["panicked at", "ERROR: libFuzzer", "ALARM:", "out-of-memory"];
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| MARKS.iter().any(|m| l.contains(m)))
        .unwrap_or(lines.len().saturating_sub(40));
    lines[start..lines.len().min(start + 30)].join("\n")
}

/// Builds every target, runs each for `seconds`, and fails if any crashed.
pub fn run_all(workspace: &Path, seconds: u32) -> anyhow::Result<()> {
    let mut build = cargo_fuzz(workspace);
    build.arg("build").args(FLAGS);
    cmd::run(build).context("building the fuzz targets")?;
    let mut list = cargo_fuzz(workspace);
    list.arg("list");
    let targets: Vec<String> = cmd::output(list)
        .context("`cargo fuzz list` failed")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz target in fuzz/");
    }

    let fuzz = workspace.join("fuzz");
    let mut failed = Vec::new();
    for target in &targets {
        let seeds = fuzz.join("corpus").join(target);
        if !seeds.is_dir() {
            bail!(
                "fuzz target {target} has no seed corpus ({})",
                seeds.display()
            );
        }
        // libFuzzer adds what it finds to the first corpus directory: a scratch one under
        // target/, so that the checked-in seeds stay as they are (and a developer's next run
        // starts where the last one stopped).
        let found = fuzz.join("target/corpus").join(target);
        let logs = fuzz.join("target/logs");
        std::fs::create_dir_all(&found)?;
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{target}.log"));
        let artifacts = fuzz.join("artifacts").join(target);
        let before = files(&artifacts);

        let mut run = cargo_fuzz(workspace);
        run.arg("run")
            .args(FLAGS)
            .arg(target)
            .arg(&found)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={SECONDS_PER_INPUT}"))
            .arg("-print_final_stats=1");
        // The words of the input's language (keys, kinds, names), for a target that has them:
        // the fuzzer would take most of its time to guess them byte by byte.
        let dict = fuzz.join("dict").join(format!("{target}.dict"));
        if dict.is_file() {
            run.arg(format!("-dict={}", dict.display()));
        }
        // libFuzzer prints a line per new path: to a log, with the end of it shown.
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        run.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        let started = Instant::now();
        let status = run
            .status()
            .with_context(|| format!("cannot start cargo fuzz run {target}"))?;
        let took = started.elapsed().as_secs();
        if status.success() {
            let stats = std::fs::read_to_string(&log).unwrap_or_default();
            let runs = stats
                .lines()
                .find_map(|l| l.strip_prefix("stat::number_of_executed_units: "))
                .unwrap_or("?");
            println!("fuzz {target}: ok, {runs} inputs in {took} s");
            continue;
        }
        println!(
            "fuzz {target}: FAILED after {took} s ({status}); from {}:",
            log.display()
        );
        println!("{}", failure_excerpt(&log));
        let reproducers: Vec<PathBuf> = files(&artifacts)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        for r in &reproducers {
            println!("fuzz {target}: reproducer {}", r.display());
            println!(
                "  again: rustup run nightly cargo fuzz run {} {target} {}",
                FLAGS.join(" "),
                r.display()
            );
        }
        failed.push(target.clone());
    }
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}
