//! Text helpers shared by every layer's error messages.

/// Collapses a message onto one line: an operator reads errors in a journal line or a
/// terminal, and a multi-line verifier log or TOML snippet must not break either.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How often, in words: "once", "twice", "3 times".
pub fn times(n: u32) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}
