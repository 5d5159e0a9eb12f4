//! A ConfigMap update reloads the configuration without a signal: the daemon runs from a
//! directory laid out like a kubelet ConfigMap volume, the test swaps it the way kubelet
//! does (a new timestamped directory, `..data_tmp` renamed over `..data`, the old
//! directory removed), and the daemon follows: a valid change is in force within seconds,
//! a broken one is refused in one line and counted, and the running configuration stays.
//! No SIGHUP is sent.

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::Duration,
};

use enforcer_tests::{
    cgroup::TestCgroup,
    daemon::{Daemon, Launch, metric_value},
    require_root, unique_name, wait_until,
};

/// A ConfigMap volume holding one key, `enforcer.toml`.
struct Volume {
    dir: PathBuf,
    generation: u32,
}

impl Volume {
    fn data_dir(&self) -> String {
        format!("..2026_12_01_00_00_00.{}", 123 + self.generation)
    }

    /// `..2026_12_01_00_00_00.123/enforcer.toml`, `..data` → it, `enforcer.toml` →
    /// `..data/enforcer.toml`.
    fn create(dir: &Path, text: &str) -> Volume {
        let volume = Volume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        std::fs::create_dir_all(dir.join(volume.data_dir())).unwrap();
        std::fs::write(dir.join(volume.data_dir()).join("enforcer.toml"), text).unwrap();
        symlink(volume.data_dir(), dir.join("..data")).unwrap();
        symlink("..data/enforcer.toml", dir.join("enforcer.toml")).unwrap();
        volume
    }

    /// What kubelet's AtomicWriter does on an update.
    fn swap(&mut self, text: &str) {
        let old = self.dir.join(self.data_dir());
        self.generation += 1;
        let new = self.data_dir();
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        std::fs::write(self.dir.join(&new).join("enforcer.toml"), text).unwrap();
        symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(old).unwrap();
    }
}

fn rule(name: &str, rule: &str, class: &str) -> String {
    format!(
        "[classify]\nappend_defaults = true\n[[classify.rules]]\nname = \"{rule}\"\nmatch = '{name}'\nclass = \"{class}\"\n"
    )
}

/// The rule and class the daemon gives the test cgroup.
fn classified(daemon: &Daemon, name: &str) -> Option<(String, String)> {
    let out = daemon.cli(&["cgroups", "--output", "json"]);
    let cgroups: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    let c = cgroups
        .iter()
        .find(|c| c["path"].as_str().is_some_and(|p| p.ends_with(name)))?;
    Some((c["rule"].as_str()?.into(), c["class"].as_str()?.into()))
}

fn metric(daemon: &Daemon, series: &str) -> f64 {
    metric_value(&daemon.scrape(), series).unwrap_or_else(|| panic!("{series} not exported"))
}

#[test]
fn a_configmap_update_reloads_without_a_signal_and_a_broken_one_is_refused() {
    require_root();
    let name = unique_name("enf-cm");
    let _cgroup = TestCgroup::create("cpu", &name);
    let volume = std::rc::Rc::new(std::cell::RefCell::new(None));
    let launch = Launch {
        place_config: Some(Box::new({
            let volume = volume.clone();
            move |dir: &Path, text: &str| {
                let v = Volume::create(&dir.join("config"), text);
                let path = v.dir.join("enforcer.toml");
                *volume.borrow_mut() = Some(v);
                path
            }
        })),
        ..Launch::default()
    };
    let network_off = "[network]\nenabled = false\n";
    let daemon = Daemon::start_with(
        "",
        &format!("{network_off}{}", rule(&name, "cm-v1", "online")),
        launch,
    );
    let mut volume = volume.borrow_mut().take().expect("volume laid out");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let base = text.split("[network]").next().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(5), || classified(&daemon, &name)
            == Some(("cm-v1".into(), "online".into()))),
        "the test cgroup is classified by the first rule"
    );
    assert_eq!(metric(&daemon, "enforcer_config_watched"), 1.0);
    assert_eq!(metric(&daemon, "enforcer_config_reloads_total"), 0.0);
    let loaded_at = metric(
        &daemon,
        "enforcer_config_last_reload_success_timestamp_seconds",
    );

    // A valid update: a new rule name and class, in force within seconds.
    volume.swap(&format!(
        "{base}{network_off}{}",
        rule(&name, "cm-v2", "system")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || classified(&daemon, &name)
            == Some(("cm-v2".into(), "system".into()))),
        "the swapped configuration is in force:\n{}",
        daemon.log()
    );
    assert_eq!(metric(&daemon, "enforcer_config_reloads_total"), 1.0);
    assert_eq!(
        metric(&daemon, "enforcer_config_last_reload_successful"),
        1.0
    );
    assert!(
        metric(
            &daemon,
            "enforcer_config_last_reload_success_timestamp_seconds"
        ) > loaded_at
    );
    let reloaded = |log: &str| {
        log.lines()
            .filter(|l| l.contains("config file changed: configuration reloaded"))
            .count()
    };
    assert_eq!(reloaded(&daemon.log()), 1, "one swap, one reload");

    // A broken update: refused, the running configuration kept, one line naming the file
    // and the field, the failure counted.
    let broken = format!(
        "{}{network_off}{}",
        base.replacen("[daemon]\n", "[daemon]\ntop_n = 0\n", 1),
        rule(&name, "cm-broken", "offline")
    );
    volume.swap(&broken);
    assert!(
        wait_until(Duration::from_secs(5), || metric_value(
            &daemon.scrape(),
            "enforcer_config_reload_failures_total"
        ) == Some(1.0)),
        "the broken file is refused:\n{}",
        daemon.log()
    );
    assert_eq!(
        metric(&daemon, "enforcer_config_last_reload_successful"),
        0.0
    );
    // Several ticks and rescans later, still the previous configuration, still one line.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        classified(&daemon, &name),
        Some(("cm-v2".into(), "system".into()))
    );
    let log = daemon.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keeping the running configuration"))
        .collect();
    assert_eq!(refused.len(), 1, "one line for one broken file:\n{log}");
    let path = daemon.config.display().to_string();
    assert!(
        refused[0].contains(&format!("{path}: daemon.top_n: 0 is out of range")),
        "the line names the file and the field: {}",
        refused[0]
    );
    assert_eq!(
        metric(&daemon, "enforcer_config_reload_failures_total"),
        1.0
    );
    assert_eq!(metric(&daemon, "enforcer_config_reloads_total"), 1.0);

    // Fixed: the next update is in force again.
    volume.swap(&format!(
        "{base}{network_off}{}",
        rule(&name, "cm-v3", "online")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || classified(&daemon, &name)
            == Some(("cm-v3".into(), "online".into()))),
        "the fixed configuration is in force:\n{}",
        daemon.log()
    );
    assert_eq!(
        metric(&daemon, "enforcer_config_last_reload_successful"),
        1.0
    );
    assert_eq!(metric(&daemon, "enforcer_config_reloads_total"), 2.0);
    assert!(
        !daemon.log().contains("SIGHUP"),
        "no signal was involved:\n{}",
        daemon.log()
    );
}
