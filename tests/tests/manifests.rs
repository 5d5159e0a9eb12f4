//! The deployment files pass their own tools' validation: every `deploy/*.yaml` manifest
//! `kubernetes-validate --strict` (unknown fields refused) for SPEC's oldest Kubernetes
//! (1.19) and current ones, and `deploy/enforcer.service` `systemd-analyze verify`.
//! (deploy/prometheus/*.yaml are Prometheus Operator resources, for which kubernetes-validate
//! has no schema: tests/tests/alert_rules.rs checks them.) No root needed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// kubernetes-validate releases and the Kubernetes versions checked with each: kept equal to
/// `KUBERNETES_VALIDATE` in xtask/src/setup.rs, which installs them.
const KUBERNETES_VALIDATE: &[(&str, &[&str])] =
    &[("1.24.1", &["1.19.0"]), ("1.37.0", &["1.31.0", "1.37.0"])];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// The Kubernetes objects in a YAML file (documents that are not empty).
fn object_count(text: &str) -> usize {
    text.split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .count()
}

#[test]
fn kubernetes_manifests_validate_for_1_19_and_current_versions() {
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(workspace().join("deploy"))
        .expect("deploy/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    manifests.sort();
    assert!(!manifests.is_empty(), "no deploy/*.yaml");
    for (release, versions) in KUBERNETES_VALIDATE {
        let dir = home()
            .join(".cache/enforcer")
            .join(format!("kubernetes-validate-{release}"));
        assert!(
            dir.join("kubernetes_validate").is_dir(),
            "kubernetes-validate {release} is not installed in {}: run `cargo xtask setup`",
            dir.display()
        );
        for version in *versions {
            for manifest in &manifests {
                let out = Command::new("python3")
                    .args(["-m", "kubernetes_validate", "--strict", "-k", version])
                    .arg(manifest)
                    .env("PYTHONPATH", &dir)
                    .output()
                    .expect("python3");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let what = format!(
                    "kubernetes-validate {release} -k {version} {}",
                    manifest.display()
                );
                assert!(out.status.success(), "{what}:\n{text}");
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                assert!(
                    lines
                        .iter()
                        .all(|l| l.starts_with("INFO") && l.contains(" passed ")),
                    "{what}: not every object passed:\n{text}"
                );
                let objects = object_count(&std::fs::read_to_string(manifest).unwrap());
                assert_eq!(lines.len(), objects, "{what}: {objects} objects:\n{text}");
            }
        }
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let tool = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        tool.is_ok_and(|o| o.status.success()),
        "systemd-analyze not found: install the Debian package `systemd` (cargo xtask setup)"
    );
    // The unit runs /usr/local/bin/enforcer, where the package installs it; this host has no
    // such file (verify checks that ExecStart is executable), so a copy of the unit points at
    // the binary under test instead. Nothing else is changed.
    let unit = std::fs::read_to_string(workspace().join("deploy/enforcer.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/enforcer "),
        "{unit}"
    );
    let bin = enforcer_tests::daemon::enforcer_bin();
    let dir = enforcer_tests::TempDir::new("enforcer-unit");
    let copy = dir.path().join("enforcer.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/enforcer", &bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on an unknown key or a bad value ("ignoring"): any output is a finding.
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify deploy/enforcer.service:\n{text}"
    );
}
