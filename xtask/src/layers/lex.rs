//! A tokenizer that knows just enough of Rust's lexical grammar to find paths.
//!
//! It drops comments (line, doc and nested block comments), keeps every string literal
//! (plain, raw, byte, C) as one token so that `"crate::x"` is never read as a path, and
//! tells char literals (`'"'`) from lifetimes (`'a`) so that a quote inside a char
//! literal does not open a string.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword; the raw identifier `r#type` is `type`.
    Ident(String),
    /// `::`
    PathSep,
    /// Any other punctuation, one character at a time.
    Punct(char),
    /// A string literal of any kind, with its text between the quotes (escapes kept as
    /// written): `#[path = "..."]` needs it.
    Str(String),
    /// Any other literal (numbers, chars, bytes), and lifetimes and labels.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based line of the token's first character.
    pub line: u32,
}

pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        out: Vec::new(),
    };
    lexer.run();
    lexer.out
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Takes one character, counting lines: every newline goes through here.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, tok: Tok, line: u32) {
        self.out.push(Token { tok, line });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.peek(1) == Some('/') => self.line_comment(),
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '"' => {
                    self.bump();
                    let text = self.quoted();
                    self.push(Tok::Str(text), line);
                }
                '\'' => self.char_or_lifetime(),
                ':' if self.peek(1) == Some(':') => {
                    self.pos += 2;
                    self.push(Tok::PathSep, line);
                }
                c if c.is_ascii_digit() => self.number(),
                c if is_ident_start(c) => self.word(),
                c => {
                    self.bump();
                    self.push(Tok::Punct(c), line);
                }
            }
        }
    }

    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.pos += 1;
        }
    }

    /// Block comments nest in Rust: `/* a /* b */ still a comment */`.
    fn block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => break,
                (Some('/'), Some('*')) => {
                    self.pos += 2;
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.pos += 2;
                    depth -= 1;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// After an opening `"`: the text up to the closing quote; `\"` does not close it.
    fn quoted(&mut self) -> String {
        let mut text = String::new();
        while let Some(c) = self.bump() {
            match c {
                '"' => break,
                '\\' => {
                    text.push(c);
                    if let Some(escaped) = self.bump() {
                        text.push(escaped);
                    }
                }
                c => text.push(c),
            }
        }
        text
    }

    /// At the `#`s or `"` after `r`: a raw string ends at a quote followed by as many
    /// `#` as it opened with, and has no escapes.
    fn raw(&mut self) -> String {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            self.pos += 1;
            hashes += 1;
        }
        self.bump(); // the opening quote
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                self.pos += hashes;
                break;
            }
            text.push(c);
        }
        text
    }

    /// Whether a raw string starts here (right after its `r`): `#`* then `"`.
    fn raw_string_follows(&self) -> bool {
        let mut k = 0;
        while self.peek(k) == Some('#') {
            k += 1;
        }
        self.peek(k) == Some('"')
    }

    /// `'x'`, `'\n'`, `'\u{1F600}'` and `'\''` are char literals; `'a` and `'outer:` are
    /// lifetimes and labels.
    fn char_or_lifetime(&mut self) {
        let line = self.line;
        if self.peek(1) == Some('\\') {
            self.pos += 2;
            self.bump(); // the escaped character, which may itself be a quote
            while let Some(c) = self.bump() {
                if c == '\'' {
                    break;
                }
            }
        } else if self.peek(2) == Some('\'') {
            self.pos += 1;
            self.bump();
            self.pos += 1;
        } else {
            self.pos += 1;
            while self.peek(0).is_some_and(is_ident_continue) {
                self.pos += 1;
            }
        }
        self.push(Tok::Other, line);
    }

    /// `1`, `0x1f_u8`, `1.5e3`; a `.` belongs to the number only before a digit, so that
    /// `0..n` stays a range.
    fn number(&mut self) {
        let line = self.line;
        while let Some(c) = self.peek(0) {
            let fraction = c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit());
            if !(is_ident_continue(c) || fraction) {
                break;
            }
            self.pos += 1;
        }
        self.push(Tok::Other, line);
    }

    /// An identifier, or the prefix of a literal: `r"…"`, `r#"…"#`, `b"…"`, `br"…"`,
    /// `c"…"`, `cr"…"`, `b'x'`; or a raw identifier `r#name`.
    fn word(&mut self) {
        let line = self.line;
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match (word.as_str(), self.peek(0)) {
            ("r" | "br" | "cr", Some('"' | '#')) if self.raw_string_follows() => {
                let text = self.raw();
                self.push(Tok::Str(text), line);
            }
            ("r", Some('#')) if self.peek(1).is_some_and(is_ident_start) => {
                self.pos += 1;
                let start = self.pos;
                while self.peek(0).is_some_and(is_ident_continue) {
                    self.pos += 1;
                }
                let name = self.chars[start..self.pos].iter().collect();
                self.push(Tok::Ident(name), line);
            }
            ("b" | "c", Some('"')) => {
                self.bump();
                let text = self.quoted();
                self.push(Tok::Str(text), line);
            }
            ("b", Some('\'')) => self.char_or_lifetime(),
            _ => self.push(Tok::Ident(word), line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(src)
            .into_iter()
            .filter_map(|t| match t.tok {
                Tok::Ident(name) => Some(name),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn comments_are_dropped_and_block_comments_nest() {
        let src = "a // crate::x\n/// crate::y\n//! crate::z\n/* one /* two */ crate::w */ b";
        assert_eq!(idents(src), ["a", "b"]);
    }

    #[test]
    fn strings_of_every_kind_are_one_token() {
        let src = r###"a "crate::x \" crate::y" r"crate::z" r#"say "crate::q""# br##"crate::"#"## b"crate::b" c"crate::c" e"###;
        assert_eq!(idents(src), ["a", "e"]);
        let strings: Vec<_> = tokenize(src)
            .into_iter()
            .filter(|t| matches!(t.tok, Tok::Str(_)))
            .collect();
        assert_eq!(strings.len(), 6);
        assert_eq!(
            strings[2].tok,
            Tok::Str(r#"say "crate::q""#.to_string()),
            "a raw string keeps its inner quotes"
        );
    }

    #[test]
    fn char_literals_with_quotes_do_not_open_strings() {
        let src = r#"let q = '"'; let e = '\''; let u = '\u{22}'; let b = b'"'; fn f<'a>(x: &'a str) {} crate::after"#;
        let names = idents(src);
        assert!(names.contains(&"after".to_string()), "{names:?}");
        assert!(
            !names.contains(&"a".to_string()),
            "a lifetime is not an ident"
        );
    }

    #[test]
    fn raw_identifiers_and_path_separators() {
        let tokens: Vec<Tok> = tokenize("r#type::x").into_iter().map(|t| t.tok).collect();
        assert_eq!(
            tokens,
            [
                Tok::Ident("type".into()),
                Tok::PathSep,
                Tok::Ident("x".into())
            ]
        );
    }

    #[test]
    fn lines_count_inside_strings_and_comments() {
        let tokens = tokenize("a\n\"x\ny\"\n/* \n */ b\nr#\"\n\"# c");
        let lines: Vec<u32> = tokens.iter().map(|t| t.line).collect();
        assert_eq!(lines, [1, 2, 5, 6, 7]);
    }
}
