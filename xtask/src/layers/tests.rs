//! The whole check on small crates written to a temporary directory, and on the real
//! enforcer sources.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;

/// A crate source directory with these files; removed when dropped.
struct Fixture(PathBuf);

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xtask-layers-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, text) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        Fixture(dir)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn imports(report: &Report) -> Vec<(ImportRule, String, String)> {
    report
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Import { rule, site, .. } => Some((
                *rule,
                format!("{}:{}", site.file.display(), site.line),
                site.text.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn circles(report: &Report) -> Vec<Vec<String>> {
    report
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Circle { members, .. } => Some(members.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn upward_and_same_layer_imports_are_violations_test_code_is_not() {
    let crate_ = Fixture::new(&[
        (
            "lib.rs",
            "pub mod daemon;\npub mod model;\npub mod policy;\npub mod sampling;\n",
        ),
        ("main.rs", "use enforcer::daemon::run;\nmod ignored;\n"),
        (
            "model/mod.rs",
            "pub mod layout;\n/// crate::daemon::x in a comment\npub struct Class;\n",
        ),
        (
            "model/layout.rs",
            "use crate::policy::window::Window;\nfn f() { let _ = \"crate::daemon\"; }\n",
        ),
        ("policy/mod.rs", "pub mod window;\n"),
        (
            "policy/window.rs",
            "use crate::model::{self, Class};\n#[cfg(test)]\nmod tests;\n",
        ),
        ("policy/window/tests.rs", "use crate::daemon::Anything;\n"),
        (
            "sampling/mod.rs",
            "pub fn f() -> u32 {\n    crate::policy::window::size()\n}\n",
        ),
        (
            "daemon/mod.rs",
            "use crate::{model::Class, policy::window::Window, sampling};\n",
        ),
    ]);
    let report = check(&crate_.0).unwrap();
    assert_eq!(
        imports(&report),
        [
            (
                ImportRule::Upward,
                "model/layout.rs:1".to_string(),
                "use crate::policy::window::Window".to_string()
            ),
            (
                ImportRule::SameLayer,
                "sampling/mod.rs:2".to_string(),
                "crate::policy::window::size".to_string()
            ),
        ]
    );
    assert!(circles(&report).is_empty());
    let text = report.render(true);
    assert!(
        text.ends_with(
            "layers: FAILED, 2 violations (1 upward, 1 same layer) in 7 modules, 6 file-level edges\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  1  model       2 files -> policy 1!\n"),
        "{text}"
    );
    assert!(
        text.contains("  6  daemon      1 file  -> policy 1, sampling 1, model 1\n"),
        "{text}"
    );
    assert!(text.contains("(not in the tree)"), "{text}");
}

#[test]
fn a_top_level_module_without_a_layer_is_a_violation() {
    let crate_ = Fixture::new(&[
        ("lib.rs", "pub mod model;\npub mod extra;\n"),
        ("model.rs", ""),
        ("extra.rs", "use crate::model::X;\n"),
        ("stray.rs", "use crate::daemon::X;\n"),
    ]);
    let report = check(&crate_.0).unwrap();
    assert_eq!(
        report.violations,
        [Violation::Unlayered {
            module: "extra".into(),
            file: "extra.rs".into()
        }]
    );
    let text = report.render(false);
    assert!(
        text.contains("stray.rs: no `mod` declares it, not checked"),
        "{text}"
    );
    assert!(
        text.contains("   ?  extra       1 file  -> model 1\n"),
        "{text}"
    );
}

#[test]
fn using_an_item_of_the_crate_root_is_a_violation() {
    let crate_ = Fixture::new(&[
        ("lib.rs", "pub mod model;\npub struct Root;\n"),
        ("model.rs", "fn f(_: crate::Root) {}\n"),
    ]);
    let report = check(&crate_.0).unwrap();
    assert_eq!(
        imports(&report),
        [(
            ImportRule::CrateRoot,
            "model.rs:1".to_string(),
            "crate::Root".to_string()
        )]
    );
}

#[test]
fn circles_between_parents_children_and_siblings() {
    let crate_ = Fixture::new(&[
        ("lib.rs", "pub mod daemon;\n"),
        (
            "daemon/mod.rs",
            "mod network;\nmod state;\nmod a;\nmod b;\n\
             pub use network::Shaper;\n\
             use state::NodeState;\n\
             pub struct Thing;\npub struct Other;\n",
        ),
        // Uses its parent, which only re-exports it: no circle.
        (
            "daemon/network.rs",
            "use super::Thing;\npub struct Shaper;\n",
        ),
        // Uses its parent, which uses it: a circle.
        (
            "daemon/state.rs",
            "pub struct NodeState;\nfn f() -> crate::daemon::Other { todo!() }\n",
        ),
        // Siblings that use each other.
        ("daemon/a.rs", "use super::b::B;\npub struct A;\n"),
        ("daemon/b.rs", "pub struct B;\nfn f(_: super::a::A) {}\n"),
    ]);
    let report = check(&crate_.0).unwrap();
    assert!(imports(&report).is_empty());
    assert_eq!(
        circles(&report),
        [
            vec!["daemon".to_string(), "daemon::state".to_string()],
            vec!["daemon::a".to_string(), "daemon::b".to_string()],
        ]
    );
    let text = report.render(false);
    assert!(
        text.contains(
            "    daemon, daemon::state\n\
             \x20     daemon -> daemon::state  daemon/mod.rs:6  use state::NodeState\n\
             \x20     daemon::state -> daemon  daemon/state.rs:2  crate::daemon::Other\n"
        ),
        "{text}"
    );
}

#[test]
fn path_attributes_and_non_mod_rs_parents() {
    let crate_ = Fixture::new(&[
        ("lib.rs", "pub mod actuators;\npub mod model;\n"),
        ("actuators/mod.rs", "pub mod tc;\n"),
        (
            "actuators/tc.rs",
            "mod reconcile;\n#[cfg(test)]\n#[path = \"fixtures.rs\"]\nmod tests;\n",
        ),
        (
            "actuators/tc/reconcile.rs",
            "use crate::model::tc::Filter;\n",
        ),
        ("actuators/fixtures.rs", "use crate::surfaces::Nothing;\n"),
        ("model/mod.rs", "pub mod tc;\n"),
        ("model/tc.rs", ""),
    ]);
    let report = check(&crate_.0).unwrap();
    assert!(report.violations.is_empty(), "{}", report.render(true));
    let text = report.render(true);
    assert!(
        text.contains("actuators::tc::reconcile -> model::tc"),
        "{text}"
    );
    assert!(
        !text.contains("not checked"),
        "fixtures.rs is test code: {text}"
    );
}

#[test]
fn the_leaves_of_one_use_group_are_one_violation() {
    let crate_ = Fixture::new(&[
        ("lib.rs", "pub mod model;\npub mod daemon;\n"),
        (
            "model.rs",
            "use crate::daemon::{\n    state::{A, B},\n    state::C, Top,\n};\n",
        ),
        ("daemon/mod.rs", "pub mod state;\n"),
        ("daemon/state.rs", ""),
    ]);
    let report = check(&crate_.0).unwrap();
    assert_eq!(
        imports(&report),
        [
            (
                ImportRule::Upward,
                "model.rs:2".to_string(),
                "use crate::daemon::state::{A, B}".to_string()
            ),
            (
                ImportRule::Upward,
                "model.rs:3".to_string(),
                "use crate::daemon::Top".to_string()
            ),
            (
                ImportRule::Upward,
                "model.rs:3".to_string(),
                "use crate::daemon::state::C".to_string()
            ),
        ]
    );
    assert_eq!(merge_leaves("a::b::{C, D}", "a::b::E"), "a::b::{C, D, E}");
    assert_eq!(merge_leaves("a::b", "c::d"), "a::b, c::d");
}

/// EXPECTED TO FAIL until the refactor of enforcer/src that fixes its layering lands.
#[test]
fn enforcer_tree_respects_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../enforcer/src");
    let mut report = check(&src).expect("the enforcer sources are readable");
    report.src = "enforcer/src".into();
    assert!(
        report.violations.is_empty(),
        "enforcer/src breaks its layers:\n{}",
        report.render(false)
    );
}
