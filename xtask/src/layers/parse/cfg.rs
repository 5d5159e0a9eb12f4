//! What `#[cfg(test)]` removes: the attribute readers and the skip of a test item.

use super::{BLOCK_ITEMS, ModDecl, Scanner};
use crate::layers::lex::{Tok, Token};

impl Scanner {
    /// Skips the item, statement, field or match arm that `#[cfg(test)]` removes, noting
    /// a `mod name;` it declares (that file is test code).
    pub(super) fn skip_test_item(&mut self, path_attr: Option<String>) {
        if self.ident(self.i) == Some("mod")
            && let Some(name) = self.ident(self.i + 1).map(str::to_string)
            && self.is_punct(self.i + 2, ';')
        {
            if self.frames.is_empty() {
                self.out.mods.push(ModDecl {
                    name,
                    path_attr,
                    test: true,
                });
            }
            self.i += 3;
            return;
        }
        let block_item = (self.i..)
            .map_while(|at| match self.tok(at) {
                Some(Tok::Ident(word)) => Some(word.as_str()),
                Some(Tok::Str(_)) => Some(""), // extern "C"
                _ => None,
            })
            .any(|word| BLOCK_ITEMS.contains(&word));
        // In a module, items end at `;` or their block; elsewhere (struct fields, match
        // arms, call arguments) a `,` ends them too.
        let comma_ends = !self.at_module_scope();
        let mut depth = 0usize;
        while let Some(tok) = self.tok(self.i) {
            match tok {
                Tok::Punct('{') if block_item && depth == 0 => {
                    self.i = self.matching(self.i) + 1;
                    return;
                }
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']' | '}') => {
                    if depth == 0 {
                        return; // it closes what encloses the item: leave it
                    }
                    depth -= 1;
                }
                Tok::Punct(';') if depth == 0 => {
                    self.i += 1;
                    return;
                }
                Tok::Punct(',') if depth == 0 && comma_ends => {
                    self.i += 1;
                    return;
                }
                _ => {}
            }
            self.i += 1;
        }
    }
}

/// Whether an attribute's tokens (between `[` and `]`) are `cfg(test)` (or
/// `cfg(all(test, …))`), and the file of `path = "…"`.
pub(super) fn read_attr(body: &[Token]) -> (bool, Option<String>) {
    let toks: Vec<&Tok> = body.iter().map(|t| &t.tok).collect();
    let ident = |t: &Tok, name: &str| matches!(t, Tok::Ident(n) if n == name);
    match toks.as_slice() {
        [cfg, Tok::Punct('('), rest @ ..] if ident(cfg, "cfg") => (cfg_is_test(rest), None),
        [path, Tok::Punct('='), Tok::Str(file)] if ident(path, "path") => {
            (false, Some(file.clone()))
        }
        _ => (false, None),
    }
}

/// `test)` or `all(…, test, …))`: the tokens after `cfg(`.
fn cfg_is_test(rest: &[&Tok]) -> bool {
    let ident = |t: &Tok, name: &str| matches!(t, Tok::Ident(n) if n == name);
    match rest {
        [test, Tok::Punct(')'), ..] => ident(test, "test"),
        [all, Tok::Punct('('), args @ ..] if ident(all, "all") => {
            let mut depth = 0usize;
            for (k, tok) in args.iter().enumerate() {
                match tok {
                    Tok::Punct('(') => depth += 1,
                    Tok::Punct(')') if depth == 0 => return false,
                    Tok::Punct(')') => depth -= 1,
                    t if depth == 0
                        && ident(t, "test")
                        && matches!(args.get(k + 1), Some(Tok::Punct(',' | ')'))) =>
                    {
                        return true;
                    }
                    _ => {}
                }
            }
            false
        }
        _ => false,
    }
}
