//! The text of `cargo xtask layers`: the layer map, optionally every file-level edge, the
//! violations, and a one-line summary. It is meant to be pasted into notes as the
//! before/after picture, so it is sorted and stable.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
};

use super::{
    ImportRule, LAYERS, Report, Site, Violation,
    graph::{Reference, display},
    import_rule, layer_of, top,
};

impl Report {
    pub fn render(&self, graph: bool) -> String {
        let mut out = Vec::new();
        self.layer_map(&mut out);
        if graph {
            self.edge_list(&mut out);
        }
        if !self.tree.notes.is_empty() {
            out.push(String::new());
            out.push("not checked:".to_string());
            out.extend(self.tree.notes.iter().map(|n| format!("  {n}")));
        }
        self.violation_list(&mut out);
        out.push(String::new());
        out.push(self.summary());
        let mut text = out.join("\n");
        text.push('\n');
        text
    }

    fn dependencies(&self) -> impl Iterator<Item = &Reference> {
        self.refs.iter().filter(|r| !r.reexport)
    }

    /// The distinct file-level edges (from, to) that are dependencies.
    fn edges(&self) -> BTreeSet<(usize, usize)> {
        self.dependencies().map(|r| (r.from, r.to)).collect()
    }

    fn top_of(&self, module: usize) -> Option<&str> {
        top(&self.tree.modules[module].path)
    }

    pub fn summary(&self) -> String {
        let size = format!(
            "{} modules, {} file-level edges",
            self.tree.modules.len(),
            self.edges().len()
        );
        if self.violations.is_empty() {
            return format!("layers: ok, no violations in {size}");
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            *counts.entry(kind(v)).or_default() += 1;
        }
        let counts: Vec<String> = KINDS
            .iter()
            .filter_map(|&k| {
                counts.get(k).map(|&n| match (k, n) {
                    ("circle", n) if n > 1 => format!("{n} circles"),
                    (k, n) => format!("{n} {k}"),
                })
            })
            .collect();
        format!(
            "layers: FAILED, {} violations ({}) in {size}",
            self.violations.len(),
            counts.join(", ")
        )
    }

    fn layer_map(&self, out: &mut Vec<String>) {
        // top-level module → used top-level module → file-level edges
        let mut uses: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for (from, to) in self.edges() {
            let (a, b) = (self.top_of(from), self.top_of(to));
            if a != b {
                *uses
                    .entry(a.unwrap_or("crate"))
                    .or_default()
                    .entry(b.unwrap_or("crate"))
                    .or_default() += 1;
            }
        }
        let mut files: BTreeMap<&str, usize> = BTreeMap::new();
        for m in 0..self.tree.modules.len() {
            if let Some(t) = self.top_of(m) {
                *files.entry(t).or_default() += 1;
            }
        }
        let mut rows: Vec<&str> = LAYERS.iter().map(|&(m, _)| m).collect();
        rows.extend(files.keys().filter(|m| layer_of(m).is_none()));
        if uses.contains_key("crate") {
            rows.push("crate");
        }
        // The root first, then the unplaced modules, then the layers from the top.
        let order = |m: &str| match (m, layer_of(m)) {
            ("crate", _) => (0, Reverse(0), 0),
            (_, None) => (1, Reverse(0), 0),
            (_, Some(layer)) => (
                2,
                Reverse(layer),
                LAYERS.iter().position(|&(l, _)| l == m).unwrap_or(0),
            ),
        };
        rows.sort_by_key(|m| order(m));
        let width = rows.iter().map(|m| m.len()).max().unwrap_or(0);

        out.push(format!(
            "layer map of {} (layer, top-level module, files -> the top-level modules it uses, \
             with how many file-level edges; ! marks a violation):",
            self.src.display()
        ));
        for row in rows {
            let layer = match (row, layer_of(row)) {
                ("crate", _) => " -".to_string(),
                (_, Some(layer)) => format!("{layer:>2}"),
                (_, None) => " ?".to_string(),
            };
            let files = match (row, files.get(row)) {
                ("crate", _) => "lib.rs  ".to_string(),
                (_, None) => {
                    out.push(format!("  {layer}  {row:<width$}  (not in the tree)"));
                    continue;
                }
                (_, Some(1)) => " 1 file ".to_string(),
                (_, Some(n)) => format!("{n:>2} files"),
            };
            out.push(format!(
                "  {layer}  {row:<width$}  {files} -> {}",
                self.used(row, &uses)
            ));
        }
    }

    /// `daemon 3!, model 9, ...`: the targets, highest layer first.
    fn used(&self, row: &str, uses: &BTreeMap<&str, BTreeMap<&str, usize>>) -> String {
        let Some(targets) = uses.get(row) else {
            return "(nothing)".to_string();
        };
        let mut targets: Vec<(&str, usize)> = targets.iter().map(|(&m, &n)| (m, n)).collect();
        targets.sort_by_key(|&(m, _)| (Reverse(layer_of(m)), m));
        targets
            .iter()
            .map(|&(m, n)| {
                let bad = import_rule(as_top(row), as_top(m)).is_some();
                format!("{m} {n}{}", if bad { "!" } else { "" })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn edge_list(&self, out: &mut Vec<String>) {
        let mut by_edge: BTreeMap<(usize, usize), Vec<&Reference>> = BTreeMap::new();
        for r in &self.refs {
            by_edge.entry((r.from, r.to)).or_default().push(r);
        }
        out.push(String::new());
        out.push(format!(
            "file-level edges ({}; re-exports of a module's own descendants are not dependencies):",
            by_edge.len()
        ));
        let name = |m: usize| display(&self.tree.modules[m].path);
        let rows: Vec<(String, &Vec<&Reference>)> = by_edge
            .iter()
            .map(|(&(from, to), refs)| (format!("{} -> {}", name(from), name(to)), refs))
            .collect();
        let width = rows.iter().map(|(e, _)| e.len()).max().unwrap_or(0);
        for (edge, refs) in rows {
            // Show a reference that makes the edge a dependency, if there is one.
            let first = refs.iter().find(|r| !r.reexport).unwrap_or(&refs[0]);
            let file = self.tree.modules[first.from].file.display();
            let label = if first.reexport { " (re-export)" } else { "" };
            out.push(format!(
                "  {edge:<width$}  {:>2} ref{}  {file}:{} {}{label}",
                refs.len(),
                if refs.len() == 1 { " " } else { "s" },
                first.line,
                first.text
            ));
        }
    }

    fn violation_list(&self, out: &mut Vec<String>) {
        if self.violations.is_empty() {
            return;
        }
        out.push(String::new());
        out.push(format!("violations ({}):", self.violations.len()));
        for &(rule, heading) in &[
            (
                Some(ImportRule::Upward),
                "upward: uses a module on a higher layer",
            ),
            (
                Some(ImportRule::SameLayer),
                "same layer: uses another top-level module of its own layer",
            ),
            (
                Some(ImportRule::CrateRoot),
                "crate root: uses an item of lib.rs, which is above every layer",
            ),
        ] {
            let sites: Vec<(String, String)> = self
                .violations
                .iter()
                .filter_map(|v| match v {
                    Violation::Import {
                        rule: r,
                        site,
                        from,
                        to,
                    } if Some(*r) == rule => Some((
                        location(site),
                        format!(
                            "{}  ({} {} -> {} {})",
                            site.text,
                            from,
                            layer(from),
                            to,
                            layer(to)
                        ),
                    )),
                    _ => None,
                })
                .collect();
            if !sites.is_empty() {
                out.push(format!("  {heading}"));
                let width = sites.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
                out.extend(
                    sites
                        .iter()
                        .map(|(l, what)| format!("    {l:<width$}  {what}")),
                );
            }
        }
        let unlayered: Vec<String> = self
            .violations
            .iter()
            .filter_map(|v| match v {
                Violation::Unlayered { module, file } => {
                    Some(format!("    {module} ({})", file.display()))
                }
                _ => None,
            })
            .collect();
        if !unlayered.is_empty() {
            out.push("  unlayered: a top-level module that LAYERS does not place".to_string());
            out.extend(unlayered);
        }
        let circles: Vec<_> = self
            .violations
            .iter()
            .filter_map(|v| match v {
                Violation::Circle { members, edges } => Some((members, edges)),
                _ => None,
            })
            .collect();
        if !circles.is_empty() {
            out.push("  circle: file-level modules that depend on each other".to_string());
        }
        for (members, edges) in circles {
            out.push(format!("    {}", members.join(", ")));
            let rows: Vec<(String, String)> = edges
                .iter()
                .map(|e| {
                    let more = if e.more > 0 {
                        format!(" (+{} more)", e.more)
                    } else {
                        String::new()
                    };
                    (
                        format!("{} -> {}", e.from, e.to),
                        format!("{}  {}{more}", location(&e.first), e.first.text),
                    )
                })
                .collect();
            let width = rows.iter().map(|(e, _)| e.len()).max().unwrap_or(0);
            out.extend(
                rows.iter()
                    .map(|(e, at)| format!("      {e:<width$}  {at}")),
            );
        }
    }
}

/// The violation kinds, in the order the summary counts them.
const KINDS: &[&str] = &["upward", "same layer", "crate root", "unlayered", "circle"];

fn kind(v: &Violation) -> &'static str {
    match v {
        Violation::Import {
            rule: ImportRule::Upward,
            ..
        } => "upward",
        Violation::Import {
            rule: ImportRule::SameLayer,
            ..
        } => "same layer",
        Violation::Import {
            rule: ImportRule::CrateRoot,
            ..
        } => "crate root",
        Violation::Unlayered { .. } => "unlayered",
        Violation::Circle { .. } => "circle",
    }
}

/// A layer-map name as a top-level module (`None` for the root).
fn as_top(name: &str) -> Option<&str> {
    (name != "crate").then_some(name)
}

fn location(site: &Site) -> String {
    format!("{}:{}", site.file.display(), site.line)
}

fn layer(top: &str) -> String {
    layer_of(top).map_or("?".to_string(), |l| l.to_string())
}
