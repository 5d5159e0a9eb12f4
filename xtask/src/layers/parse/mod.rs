//! Finds, in one file, the paths that may name another module of the crate, and the `mod`
//! declarations that make up the module tree.
//!
//! What it reads, on the tokens of [`super::lex`]:
//! - `use` trees, one path per leaf: `use crate::{a::{B, c::D}, e}` gives `crate::a::B`,
//!   `crate::a::c::D` and `crate::e`; `{self, ..}` gives the prefix itself; a glob gives
//!   its prefix. Whether the `use` is public (`pub`, `pub(crate)`, `pub(in …)`) is kept:
//!   a public `use` of a descendant is a re-export, see [`super`].
//! - inline paths in code (`crate::a::f()`, `super::b::X`, `child::g()`): every path that
//!   starts with a lowercase identifier; the resolver keeps those that start with
//!   `crate`, `$crate`, `self`, `super` or the name of a child module.
//! - `mod name;` at file level (with `#[path = "…"]`) and inline `mod name { … }`, whose
//!   name is kept as the scope of the paths inside it, for `self` and `super`.
//!
//! What it skips: every item, statement or field under `#[cfg(test)]` (or
//! `#[cfg(all(test, …))]`), inline test modules included; a file whose first attribute is
//! `#![cfg(test)]`; the paths in attributes and in `pub(in …)` visibilities.

mod cfg;
mod use_tree;

use self::cfg::read_attr;
use super::lex::{Tok, Token, tokenize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A private `use`.
    Use,
    /// A `use` with any `pub` visibility: the module hands the names on.
    PubUse,
    /// A path in code.
    Inline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    pub line: u32,
    pub segments: Vec<String>,
    pub kind: RefKind,
    /// The inline modules (`mod x { … }`) the path sits in, outermost first.
    pub scope: Vec<String>,
}

impl PathRef {
    /// The reference as written, for reports: `use crate::a::B` or `super::f`.
    pub fn text(&self) -> String {
        let path = self.segments.join("::");
        match self.kind {
            RefKind::Use => format!("use {path}"),
            RefKind::PubUse => format!("pub use {path}"),
            RefKind::Inline => path,
        }
    }
}

/// A file-level `mod name;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModDecl {
    pub name: String,
    pub path_attr: Option<String>,
    /// Under `#[cfg(test)]`: the file is test code.
    pub test: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileScan {
    pub refs: Vec<PathRef>,
    pub mods: Vec<ModDecl>,
    /// The file opens with `#![cfg(test)]`.
    pub test_only: bool,
}

pub fn scan(src: &str) -> FileScan {
    let mut scanner = Scanner {
        toks: tokenize(src),
        i: 0,
        frames: Vec::new(),
        out: FileScan::default(),
    };
    scanner.run();
    scanner.out
}

/// Items whose body is a brace block that ends them (`fn f() { … }` needs no `;`).
const BLOCK_ITEMS: &[&str] = &[
    "fn",
    "mod",
    "impl",
    "trait",
    "struct",
    "enum",
    "union",
    "extern",
    "macro_rules",
];

enum Frame {
    /// The braces of an inline `mod name { … }`.
    Module(String),
    /// Any other braces: an impl, a function body, a struct literal, …
    Block,
}

/// The outer attributes in front of the next item.
#[derive(Default)]
struct Attrs {
    test: bool,
    path: Option<String>,
}

struct Scanner {
    toks: Vec<Token>,
    i: usize,
    frames: Vec<Frame>,
    out: FileScan,
}

impl Scanner {
    fn tok(&self, at: usize) -> Option<&Tok> {
        self.toks.get(at).map(|t| &t.tok)
    }

    fn is_punct(&self, at: usize, c: char) -> bool {
        self.tok(at) == Some(&Tok::Punct(c))
    }

    fn ident(&self, at: usize) -> Option<&str> {
        match self.tok(at) {
            Some(Tok::Ident(name)) => Some(name),
            _ => None,
        }
    }

    fn line(&self, at: usize) -> u32 {
        self.toks.get(at).or(self.toks.last()).map_or(0, |t| t.line)
    }

    /// The index of the bracket that closes the one at `open` (or the last token, when the
    /// source is unbalanced).
    fn matching(&self, open: usize) -> usize {
        let mut depth = 0usize;
        for at in open..self.toks.len() {
            match self.tok(at) {
                Some(Tok::Punct('(' | '[' | '{')) => depth += 1,
                Some(Tok::Punct(')' | ']' | '}')) => {
                    depth -= 1;
                    if depth == 0 {
                        return at;
                    }
                }
                _ => {}
            }
        }
        self.toks.len().saturating_sub(1)
    }

    fn at_module_scope(&self) -> bool {
        matches!(self.frames.last(), None | Some(Frame::Module(_)))
    }

    fn scope(&self) -> Vec<String> {
        self.frames
            .iter()
            .filter_map(|f| match f {
                Frame::Module(name) => Some(name.clone()),
                Frame::Block => None,
            })
            .collect()
    }

    fn run(&mut self) {
        let mut attrs = Attrs::default();
        let mut public = false;
        while self.i < self.toks.len() {
            if self.is_punct(self.i, '#') {
                let inner = self.is_punct(self.i + 1, '!');
                let open = self.i + 1 + usize::from(inner);
                if self.is_punct(open, '[') {
                    let close = self.matching(open);
                    let (test, path) = read_attr(&self.toks[open + 1..close]);
                    if inner {
                        if test && self.frames.is_empty() {
                            self.out.test_only = true;
                            return;
                        }
                    } else {
                        attrs.test |= test;
                        attrs.path = path.or(attrs.path.take());
                    }
                    self.i = close + 1;
                    continue; // attributes stack up in front of their item
                }
            }
            if self.ident(self.i) == Some("pub") {
                self.i += 1;
                if self.is_punct(self.i, '(') {
                    // `pub(in crate::a)` names a module without depending on it.
                    self.i = self.matching(self.i) + 1;
                }
                public = true;
                continue;
            }
            if attrs.test {
                self.skip_test_item(attrs.path.take());
            } else {
                self.step(public, attrs.path.take());
            }
            attrs = Attrs::default();
            public = false;
        }
    }

    /// One token (or one construct starting at it) of code that is not under cfg(test).
    fn step(&mut self, public: bool, path_attr: Option<String>) {
        let at = self.i;
        match self.tok(at) {
            Some(Tok::Ident(word)) if word == "mod" => {
                let Some(name) = self.ident(at + 1).map(str::to_string) else {
                    self.i += 1;
                    return;
                };
                if self.is_punct(at + 2, ';') {
                    // A `mod x;` nested in an inline module would live in another
                    // directory; the crate has none, so only file-level ones count.
                    if self.frames.is_empty() {
                        self.out.mods.push(ModDecl {
                            name,
                            path_attr,
                            test: false,
                        });
                    }
                    self.i += 3;
                } else if self.is_punct(at + 2, '{') {
                    self.frames.push(Frame::Module(name));
                    self.i += 3;
                } else {
                    self.i += 1;
                }
            }
            Some(Tok::Ident(word)) if word == "use" => self.use_decl(public),
            Some(Tok::Ident(word))
                if word.starts_with(|c: char| c.is_lowercase() || c == '_')
                    && self.tok(at + 1) == Some(&Tok::PathSep)
                    && !matches!(
                        at.checked_sub(1).and_then(|p| self.tok(p)),
                        Some(Tok::PathSep | Tok::Punct('.'))
                    ) =>
            {
                // The start of a path (not its middle, not a method's turbofish).
                self.inline_path();
            }
            Some(Tok::Punct('{')) => {
                self.frames.push(Frame::Block);
                self.i += 1;
            }
            Some(Tok::Punct('}')) => {
                self.frames.pop();
                self.i += 1;
            }
            _ => self.i += 1,
        }
    }

    fn inline_path(&mut self) {
        let line = self.line(self.i);
        let mut segments = Vec::new();
        while let Some(name) = self.ident(self.i) {
            segments.push(name.to_string());
            self.i += 1;
            // `a::b`, but not `a::<T>` nor `a::{…}` nor `a::*`.
            if self.tok(self.i) == Some(&Tok::PathSep) && self.ident(self.i + 1).is_some() {
                self.i += 1;
            } else {
                break;
            }
        }
        self.out.refs.push(PathRef {
            line,
            segments,
            kind: RefKind::Inline,
            scope: self.scope(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The references the resolver may keep, as text.
    fn refs(src: &str) -> Vec<String> {
        scan(src)
            .refs
            .iter()
            .filter(|r| matches!(r.segments[0].as_str(), "crate" | "self" | "super" | "child"))
            .map(PathRef::text)
            .collect()
    }

    #[test]
    fn nested_use_groups_over_several_lines() {
        let src = "use crate::{\n    model::{Class, index::CgroupIndex},\n    policy::ladder::Stage,\n};\nuse super::{state::NodeState, network::X};\n";
        let scan = scan(src);
        let got: Vec<(u32, String)> = scan.refs.iter().map(|r| (r.line, r.text())).collect();
        assert_eq!(
            got,
            [
                (2, "use crate::model::Class".to_string()),
                (2, "use crate::model::index::CgroupIndex".to_string()),
                (3, "use crate::policy::ladder::Stage".to_string()),
                (5, "use super::state::NodeState".to_string()),
                (5, "use super::network::X".to_string()),
            ]
        );
    }

    #[test]
    fn use_self_in_a_group_globs_and_renames() {
        assert_eq!(
            refs("use crate::a::{self, b}; use crate::c::*; use self::d::{self as e, F as G};"),
            [
                "use crate::a",
                "use crate::a::b",
                "use crate::c",
                "use self::d",
                "use self::d::F"
            ]
        );
    }

    #[test]
    fn visibilities_make_a_use_public_and_are_not_paths() {
        let src = "pub use child::A; pub(crate) use crate::b::C; pub(in crate::x) use super::super::classify; pub(super) fn f() {}";
        assert_eq!(
            refs(src),
            [
                "pub use child::A",
                "pub use crate::b::C",
                "pub use super::super::classify"
            ]
        );
    }

    #[test]
    fn inline_paths_in_code() {
        let src = "fn f() { let t = crate::daemon::state::unix_now(); super::protect::node_memory_used(); child::run::<u8>(); $crate::m::g(); x.collect::<Vec<_>>(); std::mem::take(&mut y); }";
        assert_eq!(
            refs(src),
            [
                "crate::daemon::state::unix_now",
                "super::protect::node_memory_used",
                "child::run",
                "crate::m::g"
            ]
        );
    }

    #[test]
    fn comments_and_strings_hide_paths() {
        let src = r####"
            // use crate::a;
            /// crate::b::f()
            //! use crate::c;
            /* crate::d /* nested */ crate::e */
            const S: &str = "use crate::f; \" crate::g";
            const R: &str = r#"crate::h "quoted" "#;
            const Q: char = '"';
            fn real() { crate::real::f() }
        "####;
        assert_eq!(refs(src), ["crate::real::f"]);
    }

    #[test]
    fn cfg_test_items_and_modules_are_skipped() {
        let src = r#"
            use crate::kept::A;
            #[cfg(test)]
            mod tests {
                use crate::daemon::X;
                fn f() { crate::daemon::y(); { nested } }
            }
            #[cfg(test)]
            #[path = "fixtures.rs"]
            mod fixtures;
            #[cfg(all(test, feature = "x"))]
            use crate::gone::B;
            #[cfg(test)]
            pub(super) fn only_for_tests() -> [u8; 2] { crate::gone::c() }
            #[cfg(not(test))]
            use crate::kept::D;
            struct S {
                #[cfg(test)]
                probe: crate::gone::Probe,
                kept: crate::kept::Field,
            }
            mod real;
        "#;
        let scan = scan(src);
        let texts: Vec<String> = scan.refs.iter().map(PathRef::text).collect();
        assert_eq!(
            texts,
            [
                "use crate::kept::A",
                "use crate::kept::D",
                "crate::kept::Field"
            ]
        );
        assert_eq!(
            scan.mods,
            [
                ModDecl {
                    name: "fixtures".into(),
                    path_attr: Some("fixtures.rs".into()),
                    test: true
                },
                ModDecl {
                    name: "real".into(),
                    path_attr: None,
                    test: false
                },
            ]
        );
    }

    #[test]
    fn a_cfg_test_file_is_test_only() {
        let scan = scan("//! Tests.\n#![cfg(test)]\nuse crate::a::B;\n");
        assert!(scan.test_only);
        assert!(scan.refs.is_empty());
    }

    #[test]
    fn inline_modules_give_their_paths_a_scope() {
        let scan = scan("mod inner { use super::a::B; fn f() { self::g() } } use crate::c;");
        let scopes: Vec<(String, Vec<String>)> = scan
            .refs
            .iter()
            .map(|r| (r.text(), r.scope.clone()))
            .collect();
        assert_eq!(
            scopes,
            [
                ("use super::a::B".to_string(), vec!["inner".to_string()]),
                ("self::g".to_string(), vec!["inner".to_string()]),
                ("use crate::c".to_string(), vec![]),
            ]
        );
        assert!(scan.mods.is_empty(), "an inline module declares no file");
    }
}
