//! `use` declarations and their trees, one path per leaf.

use super::{PathRef, RefKind, Scanner};
use crate::layers::lex::Tok;

impl Scanner {
    pub(super) fn use_decl(&mut self, public: bool) {
        self.i += 1; // `use`
        let kind = if public {
            RefKind::PubUse
        } else {
            RefKind::Use
        };
        // `use ::name` can only name another crate.
        if self.tok(self.i) != Some(&Tok::PathSep) {
            let mut leaves = Vec::new();
            self.use_tree(Vec::new(), &mut leaves);
            let scope = self.scope();
            self.out
                .refs
                .extend(leaves.into_iter().map(|(segments, line)| PathRef {
                    line,
                    segments,
                    kind,
                    scope: scope.clone(),
                }));
        }
        while self.i < self.toks.len() && !self.is_punct(self.i, ';') {
            self.i += 1;
        }
        self.i += 1;
    }

    /// One use tree at `self.i`, under `prefix`: pushes a (path, line) per leaf.
    fn use_tree(&mut self, mut prefix: Vec<String>, leaves: &mut Vec<(Vec<String>, u32)>) {
        loop {
            let line = self.line(self.i);
            match self.tok(self.i) {
                Some(Tok::Punct('{')) => {
                    self.i += 1;
                    while !self.is_punct(self.i, '}') {
                        let before = self.i;
                        self.use_tree(prefix.clone(), leaves);
                        if self.is_punct(self.i, ',') {
                            self.i += 1;
                        } else if self.i == before || !self.is_punct(self.i, '}') {
                            return; // malformed: leave the rest to the `;` search
                        }
                    }
                    self.i += 1;
                    return;
                }
                Some(Tok::Punct('*')) => {
                    self.i += 1;
                    leaves.push((prefix, line));
                    return;
                }
                Some(Tok::Ident(name)) => {
                    let name = name.clone();
                    self.i += 1;
                    if name == "self" && !prefix.is_empty() {
                        // `a::{self, …}` names `a` itself.
                    } else {
                        prefix.push(name);
                        if self.tok(self.i) == Some(&Tok::PathSep) {
                            self.i += 1;
                            continue;
                        }
                    }
                    if self.ident(self.i) == Some("as") {
                        self.i += 2;
                    }
                    leaves.push((prefix, line));
                    return;
                }
                _ => {
                    if !prefix.is_empty() {
                        leaves.push((prefix, line));
                    }
                    return;
                }
            }
        }
    }
}
