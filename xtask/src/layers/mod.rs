//! `cargo xtask layers`: the module-dependency check of the enforcer crate.
//!
//! Every file reached from `enforcer/src/lib.rs` through its `mod` declarations is one
//! module (`main.rs`, the binary, is not part of the graph); files that only a
//! `#[cfg(test)]` declaration reaches, and every `#[cfg(test)]` item, are test code, which
//! may use whatever it likes. A reference is a `use` leaf or a path in code that starts
//! with `crate`, `self`, `super` or a child module's name; it names the longest prefix of
//! its absolute path that is a module (`crate::model::layout::CgroupLayout` names
//! `model::layout`, `crate::model::Class` names `model`). Re-exports are not followed:
//! `super::Thing` names the parent even when the parent only re-exports `Thing`.
//!
//! The rules:
//!
//! - **Layers.** [`LAYERS`] places each top-level module on a layer, lowest at the bottom.
//!   A module under top-level `a` may use one under `b` only if `a == b` or
//!   `layer(b) < layer(a)`: upward is a violation, and so is sideways (two top-level
//!   modules on the same layer). A top-level module missing from [`LAYERS`] is a
//!   violation, so that a new module needs a decision. The crate root sits above every
//!   layer: it may use anything, and a module that uses an item of the root itself
//!   (defined in `lib.rs`) breaks the layering too.
//! - **No circle.** Among the file-level modules, references must form no cycle: each
//!   strongly connected component of more than one module is a violation. References to a
//!   module's own ancestors and descendants are edges like any other, with one exception:
//!   the way a parent (`mod.rs`, `lib.rs`, or `a.rs` with an `a/` directory) *declares* its
//!   children (`mod x;`) and *re-exports* them (`pub use x::Item`, any `pub(…)`, of any of
//!   its descendants) is not an edge — it only names the child's items for the parent's
//!   users, the parent's own code does not depend on them. Hence:
//!     - a parent that uses its child in its own code (a private `use x::…`, or
//!       `x::f()`) has an edge parent → child, which alone is fine;
//!     - a child that uses an item of its parent's file (`super::Thing`, or
//!       `crate::daemon::Thing` from `daemon::network`) has an edge child → parent, which
//!       alone is fine too;
//!     - both together are a circle. When the parent merely re-exports, there is no
//!       circle; when the child means a sibling's item, it says `super::sibling::Thing`.
//!
//! [`check`] runs it in-process (`cargo xtask test` does); [`Report::render`] gives the
//! layer map, the violations and a summary.

mod graph;
mod lex;
mod parse;
mod report;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::bail;

use self::graph::{Reference, Tree, display};

/// Top-level module → layer, lowest at the bottom. Layer-0 modules that are not written
/// yet are placed already, so that the refactor that adds them needs no change here.
pub const LAYERS: &[(&str, u32)] = &[
    ("host", 0),
    ("clock", 1),
    ("text", 1),
    ("model", 1),
    ("sampling", 2),
    ("runtime", 2),
    ("policy", 2),
    ("config", 3),
    ("actuators", 4),
    ("surfaces", 5),
    ("daemon", 6),
];

pub fn layer_of(top: &str) -> Option<u32> {
    LAYERS
        .iter()
        .find(|(module, _)| *module == top)
        .map(|&(_, layer)| layer)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportRule {
    /// The used module is on a higher layer.
    Upward,
    /// The used module is another top-level module on the same layer.
    SameLayer,
    /// The used module is the crate root itself.
    CrateRoot,
}

/// One reference, where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Relative to the source directory.
    pub file: PathBuf,
    pub line: u32,
    pub text: String,
}

/// A file-level edge inside a circle: its first reference, and how many more there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircleEdge {
    pub from: String,
    pub to: String,
    pub first: Site,
    pub more: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Unlayered {
        module: String,
        file: PathBuf,
    },
    Import {
        rule: ImportRule,
        site: Site,
        /// The top-level modules, from and to.
        from: String,
        to: String,
    },
    Circle {
        members: Vec<String>,
        edges: Vec<CircleEdge>,
    },
}

pub struct Report {
    /// The source directory, as the report names it.
    pub src: PathBuf,
    tree: Tree,
    refs: Vec<Reference>,
    pub violations: Vec<Violation>,
}

/// The top-level module of a module path (`None` for the root).
fn top(path: &[String]) -> Option<&str> {
    path.first().map(String::as_str)
}

/// Which layer rule a reference between these top-level modules breaks, if any (`None`
/// stands for the crate root).
pub fn import_rule(from: Option<&str>, to: Option<&str>) -> Option<ImportRule> {
    match (from, to) {
        (None, _) => None, // the root is above every layer
        (Some(_), None) => Some(ImportRule::CrateRoot),
        (Some(a), Some(b)) if a == b => None,
        (Some(a), Some(b)) => match (layer_of(a), layer_of(b)) {
            (Some(la), Some(lb)) if lb > la => Some(ImportRule::Upward),
            (Some(la), Some(lb)) if lb == la => Some(ImportRule::SameLayer),
            _ => None, // downward, or unlayered (reported once, as such)
        },
    }
}

/// Checks the crate whose sources are in `src` (its `lib.rs` is the root).
pub fn check(src: &Path) -> anyhow::Result<Report> {
    let tree = Tree::load(src)?;
    let refs = tree.references();
    let mut violations = Vec::new();

    for module in &tree.modules {
        if let [name] = module.path.as_slice()
            && layer_of(name).is_none()
        {
            violations.push(Violation::Unlayered {
                module: name.clone(),
                file: module.file.clone(),
            });
        }
    }

    let site = |r: &Reference| Site {
        file: tree.modules[r.from].file.clone(),
        line: r.line,
        text: r.text.clone(),
    };
    let dependencies: Vec<&Reference> = refs.iter().filter(|r| !r.reexport).collect();
    // One violation per line and used module: the leaves of one `use` group
    // (`use crate::a::{B, C}`) are one import. The references are sorted by (from, to,
    // line), so a group's leaves are neighbours.
    let first_import = violations.len();
    let mut previous: Option<(usize, usize, u32)> = None;
    for r in &dependencies {
        let (from, to) = (&tree.modules[r.from].path, &tree.modules[r.to].path);
        let Some(rule) = import_rule(top(from), top(to)) else {
            continue;
        };
        let key = (r.from, r.to, r.line);
        if previous == Some(key)
            && let Some(Violation::Import { site, .. }) = violations.last_mut()
        {
            site.text = merge_leaves(&site.text, &r.text);
            continue;
        }
        previous = Some(key);
        violations.push(Violation::Import {
            rule,
            site: site(r),
            from: top(from).unwrap_or("crate").to_string(),
            to: top(to).unwrap_or("crate").to_string(),
        });
    }
    violations[first_import..].sort_by_key(|v| match v {
        Violation::Import { site, .. } => (site.file.clone(), site.line, site.text.clone()),
        _ => unreachable!("only imports from `first_import` on"),
    });

    let edges: Vec<(usize, usize)> = dependencies
        .iter()
        .map(|r| (r.from, r.to))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for members in graph::circles(tree.modules.len(), &edges) {
        let mut by_edge: BTreeMap<(usize, usize), Vec<&Reference>> = BTreeMap::new();
        for r in &dependencies {
            if members.contains(&r.from) && members.contains(&r.to) {
                by_edge.entry((r.from, r.to)).or_default().push(r);
            }
        }
        let name = |m: usize| display(&tree.modules[m].path);
        violations.push(Violation::Circle {
            members: members.iter().map(|&m| name(m)).collect(),
            edges: by_edge
                .into_iter()
                .map(|((from, to), refs)| CircleEdge {
                    from: name(from),
                    to: name(to),
                    first: site(refs[0]),
                    more: refs.len() - 1,
                })
                .collect(),
        });
    }

    Ok(Report {
        src: src.to_path_buf(),
        tree,
        refs,
        violations,
    })
}

/// `use a::b::C` and `use a::b::D` are `use a::b::{C, D}`; and that with `use a::b::E`
/// is `use a::b::{C, D, E}`. Texts that differ before their last segment are listed.
fn merge_leaves(merged: &str, next: &str) -> String {
    let Some((head, tail)) = next.rsplit_once("::") else {
        return format!("{merged}, {next}");
    };
    if let Some(group) = merged
        .strip_prefix(head)
        .and_then(|rest| rest.strip_prefix("::{"))
        .and_then(|rest| rest.strip_suffix('}'))
    {
        return format!("{head}::{{{group}, {tail}}}");
    }
    match merged.rsplit_once("::") {
        Some((merged_head, first)) if merged_head == head => format!("{head}::{{{first}, {tail}}}"),
        _ => format!("{merged}, {next}"),
    }
}

/// Checks `src`, prints the report (naming the directory `shown_as`), and fails when
/// there is a violation.
pub fn run(src: &Path, shown_as: &Path, graph: bool) -> anyhow::Result<()> {
    let mut report = check(src)?;
    report.src = shown_as.to_path_buf();
    print!("{}", report.render(graph));
    if !report.violations.is_empty() {
        bail!(
            "{} layer violation(s) in {}",
            report.violations.len(),
            report.src.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
