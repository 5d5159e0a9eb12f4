//! The crate's module tree, path resolution, and the file-level dependency graph.
//!
//! The tree is followed from `lib.rs` through its `mod` declarations, as rustc does, so
//! that a module path comes from where it is declared (`daemon/tick.rs` is `daemon::tick`,
//! `daemon/mod.rs` is `daemon`) and `#[path]` and `#[cfg(test)] mod tests;` are honoured:
//! a file that only a test declaration reaches is test code and is not checked.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context;

use super::parse::{self, FileScan, ModDecl, PathRef, RefKind};

pub type ModPath = Vec<String>;

/// `daemon::network`, or `crate` for the root.
pub fn display(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

pub struct Module {
    pub path: ModPath,
    /// Relative to the source directory.
    pub file: PathBuf,
    pub scan: FileScan,
}

pub struct Tree {
    /// Sorted by path; the root (`lib.rs`) first.
    pub modules: Vec<Module>,
    index: HashMap<ModPath, usize>,
    /// Files that are not checked, and why (besides test code).
    pub notes: Vec<String>,
}

/// One reference from a module to another module of the crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub from: usize,
    pub to: usize,
    pub line: u32,
    pub text: String,
    /// A public `use` of one of the module's own descendants: naming, not dependence.
    pub reexport: bool,
}

impl Tree {
    pub fn load(src: &Path) -> anyhow::Result<Tree> {
        let mut modules = Vec::new();
        let mut reached = HashSet::new();
        let mut notes = Vec::new();
        // (module path, file relative to `src`, whether it is test code)
        let mut queue = vec![(ModPath::new(), PathBuf::from("lib.rs"), false)];
        while let Some((path, file, test)) = queue.pop() {
            if !reached.insert(file.clone()) {
                continue; // two `#[path]`s to one file
            }
            let text = fs::read_to_string(src.join(&file))
                .with_context(|| format!("cannot read {}", src.join(&file).display()))?;
            let scan = parse::scan(&text);
            let test = test || scan.test_only;
            for decl in &scan.mods {
                let mut child = path.clone();
                child.push(decl.name.clone());
                match child_file(src, &file, decl) {
                    Some(child_file) => queue.push((child, child_file, test || decl.test)),
                    None => notes.push(format!(
                        "{}: no file for `mod {}`",
                        file.display(),
                        decl.name
                    )),
                }
            }
            if !test {
                modules.push(Module { path, file, scan });
            }
        }
        // A file that no `mod` reaches is not compiled into the library; say so rather
        // than guess what module it would be.
        for file in rs_files(src)? {
            if file != Path::new("main.rs") && !reached.contains(&file) {
                notes.push(format!(
                    "{}: no `mod` declares it, not checked",
                    file.display()
                ));
            }
        }
        Ok(Tree::new(modules, notes))
    }

    pub fn new(mut modules: Vec<Module>, notes: Vec<String>) -> Tree {
        modules.sort_by(|a, b| a.path.cmp(&b.path));
        let index = modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.clone(), i))
            .collect();
        Tree {
            modules,
            index,
            notes,
        }
    }

    pub fn get(&self, path: &[String]) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// The module a path in module `from` names: the longest prefix of the absolute
    /// path that is a module (`crate::model::layout::CgroupLayout` is `model::layout`,
    /// `crate::model::Class` is `model`). `None` for a path that cannot name the crate:
    /// another crate, a type, an item brought in by `use`.
    pub fn resolve(&self, from: &[String], path: &PathRef) -> Option<ModPath> {
        let mut base: ModPath = from.iter().chain(&path.scope).cloned().collect();
        let mut segments = path.segments.as_slice();
        match segments.first()?.as_str() {
            "crate" => {
                base.clear();
                segments = &segments[1..];
            }
            "self" | "super" => {}
            // A child module is in scope by its bare name (`use cgroupfs::CgroupDirs`
            // in `actuators/mod.rs`). Inside an inline module the bare names are that
            // module's items, which are no file's module.
            child if path.scope.is_empty() => {
                let mut child_path = from.to_vec();
                child_path.push(child.to_string());
                self.get(&child_path)?;
            }
            _ => return None,
        }
        while let Some(first) = segments.first() {
            match first.as_str() {
                "self" => {}
                "super" => {
                    base.pop()?;
                }
                _ => break,
            }
            segments = &segments[1..];
        }
        base.extend(segments.iter().cloned());
        while self.get(&base).is_none() {
            base.pop()?;
        }
        Some(base)
    }

    /// Every reference between two different modules, sorted, one per line and text.
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = BTreeSet::new();
        for (from, module) in self.modules.iter().enumerate() {
            for path in &module.scan.refs {
                let Some(target) = self.resolve(&module.path, path) else {
                    continue;
                };
                let to = self.get(&target).expect("resolve returns modules");
                if to == from {
                    continue;
                }
                refs.insert(Reference {
                    from,
                    to,
                    line: path.line,
                    text: path.text(),
                    reexport: path.kind == RefKind::PubUse
                        && target.len() > module.path.len()
                        && target.starts_with(&module.path),
                });
            }
        }
        refs.into_iter().collect()
    }
}

/// The file of `mod name;` declared in `file`: `#[path]` is relative to the declaring
/// file's directory; otherwise `name.rs` or `name/mod.rs` beside a `mod.rs`/`lib.rs`, or
/// under `stem/` for any other file (`tc/reconcile.rs` declares `tc/reconcile/discover.rs`).
fn child_file(src: &Path, file: &Path, decl: &ModDecl) -> Option<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let candidates = if let Some(path) = &decl.path_attr {
        vec![dir.join(path)]
    } else {
        let owns_dir = matches!(
            file.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "lib.rs" | "main.rs")
        );
        let base = if owns_dir {
            dir.to_path_buf()
        } else {
            dir.join(file.file_stem()?)
        };
        vec![
            base.join(format!("{}.rs", decl.name)),
            base.join(&decl.name).join("mod.rs"),
        ]
    };
    candidates.into_iter().find(|c| src.join(c).is_file())
}

/// Every `.rs` file under `src`, relative to it, sorted.
fn rs_files(src: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(src.join(&dir))
            .with_context(|| format!("cannot list {}", src.join(&dir).display()))?;
        for entry in entries {
            let entry = entry?;
            let rel = dir.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                dirs.push(rel);
            } else if rel.extension().is_some_and(|e| e == "rs") {
                files.push(rel);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The strongly connected components with more than one node (Tarjan's algorithm),
/// each sorted, in order of their first node.
pub fn circles(nodes: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut next = vec![Vec::new(); nodes];
    for &(from, to) in edges {
        next[from].push(to);
    }
    let mut tarjan = Tarjan {
        next,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        counter: 0,
        found: Vec::new(),
    };
    for node in 0..nodes {
        if tarjan.index[node].is_none() {
            tarjan.visit(node);
        }
    }
    let mut found: Vec<Vec<usize>> = tarjan
        .found
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort_unstable();
            c
        })
        .collect();
    found.sort();
    found
}

struct Tarjan {
    next: Vec<Vec<usize>>,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    counter: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan {
    // Recursive: the graph has one node per file, so the depth stays small.
    fn visit(&mut self, node: usize) {
        self.index[node] = Some(self.counter);
        self.low[node] = self.counter;
        self.counter += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        for k in 0..self.next[node].len() {
            let to = self.next[node][k];
            match self.index[to] {
                None => {
                    self.visit(to);
                    self.low[node] = self.low[node].min(self.low[to]);
                }
                Some(index) if self.on_stack[to] => self.low[node] = self.low[node].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[node]) == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            self.found.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ModPath {
        if s == "crate" {
            Vec::new()
        } else {
            s.split("::").map(str::to_string).collect()
        }
    }

    fn tree(paths: &[&str]) -> Tree {
        let modules = paths
            .iter()
            .map(|p| Module {
                path: path(p),
                file: PathBuf::new(),
                scan: FileScan::default(),
            })
            .collect();
        Tree::new(modules, Vec::new())
    }

    fn resolve(tree: &Tree, from: &str, src: &str) -> Vec<String> {
        parse::scan(src)
            .refs
            .iter()
            .filter_map(|r| tree.resolve(&path(from), r))
            .map(|p| display(&p))
            .collect()
    }

    const TREE: &[&str] = &[
        "crate",
        "model",
        "model::layout",
        "model::classify",
        "daemon",
        "daemon::state",
        "daemon::network",
        "actuators",
        "actuators::tc",
        "actuators::tc::reconcile",
        "actuators::tc::reconcile::discover",
    ];

    #[test]
    fn longest_module_prefix() {
        let tree = tree(TREE);
        let src = "use crate::model::layout::CgroupLayout; use crate::model::Class; use crate::{model::{self, classify::Rule}};";
        assert_eq!(
            resolve(&tree, "daemon", src),
            ["model::layout", "model", "model", "model::classify"]
        );
    }

    #[test]
    fn super_and_self_are_relative_to_the_module() {
        let tree = tree(TREE);
        // In `daemon/network.rs` (module `daemon::network`), super is `daemon`; the same
        // holds in `daemon/network/mod.rs`, which is the same module.
        assert_eq!(
            resolve(
                &tree,
                "daemon::network",
                "use super::state::NodeState; super::f(); use super::super::model::layout;"
            ),
            ["daemon::state", "daemon", "model::layout"]
        );
        assert_eq!(
            resolve(
                &tree,
                "actuators::tc::reconcile",
                "use self::discover::is_sub; use super::super::Thing; self::local();"
            ),
            [
                "actuators::tc::reconcile::discover",
                "actuators",
                "actuators::tc::reconcile"
            ]
        );
    }

    #[test]
    fn bare_child_names_and_foreign_paths() {
        let tree = tree(TREE);
        assert_eq!(
            resolve(
                &tree,
                "actuators",
                "use tc::reconcile::Role; tc::f(); use std::sync::Arc; serde::x(); state::g();"
            ),
            ["actuators::tc::reconcile", "actuators::tc"]
        );
        // Inside an inline module, a bare name is that module's own item.
        assert!(resolve(&tree, "actuators", "mod inner { use tc::X; }").is_empty());
        assert_eq!(
            resolve(&tree, "actuators", "mod inner { use super::tc::X; }"),
            ["actuators::tc"]
        );
    }

    #[test]
    fn super_above_the_root_names_nothing() {
        let tree = tree(TREE);
        assert!(resolve(&tree, "model", "use super::super::x;").is_empty());
    }

    #[test]
    fn references_mark_reexports_of_descendants() {
        let mut modules: Vec<Module> = ["crate", "config", "config::network", "model"]
            .iter()
            .map(|p| Module {
                path: path(p),
                file: PathBuf::new(),
                scan: FileScan::default(),
            })
            .collect();
        modules[1].scan = parse::scan(
            "pub use network::NetworkConfig; use network::helper; pub use crate::model::Class; use self::network::X;",
        );
        let tree = Tree::new(modules, Vec::new());
        let config = tree.get(&path("config")).unwrap();
        let refs: Vec<(String, bool)> = tree
            .references()
            .into_iter()
            .filter(|r| r.from == config)
            .map(|r| (r.text, r.reexport))
            .collect();
        assert_eq!(
            refs,
            [
                ("pub use network::NetworkConfig".to_string(), true),
                ("use network::helper".to_string(), false),
                ("use self::network::X".to_string(), false),
                ("pub use crate::model::Class".to_string(), false),
            ]
        );
    }

    #[test]
    fn circles_are_components_of_more_than_one_node() {
        // 0 → 1 → 2 → 0 (and 2 → 6 → 0) is one circle, 3 ⇄ 4 another; a self-loop is none.
        let edges = [
            (0, 1),
            (1, 2),
            (2, 0),
            (3, 4),
            (4, 3),
            (5, 5),
            (6, 0),
            (2, 6),
        ];
        assert_eq!(circles(8, &edges), [vec![0, 1, 2, 6], vec![3, 4]]);
        assert!(circles(3, &[(0, 1), (1, 2), (0, 2)]).is_empty());
    }
}
