//! API keys never leave the dashboard. The rule of the trajectories applies to every page and
//! every API answer: a key's value is replaced by `[REDACTED]` wherever it appears. The values
//! are those of the process environment and of the workspace's `.env` whose names say they are
//! secrets (`*_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`), at least 8 characters long (shorter
//! ones would match ordinary words, and no provider issues keys that short); on top, anything
//! shaped like a provider key (`sk-…`, `sk-ant-…`) is redacted even when no variable holds it.

use std::path::Path;

/// Placeholder written where a secret was (the same as in model errors).
pub const REDACTED: &str = "[REDACTED]";

/// Shortest secret searched for.
const MIN_SECRET: usize = 8;
/// Characters after `sk-` that make a provider key.
const KEY_TAIL: usize = 16;

#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// Whether a variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("_KEY")
        || n.ends_with("_TOKEN")
        || n.ends_with("_SECRET")
        || n.contains("PASSWORD")
        || n.contains("API_KEY")
}

impl Redactor {
    /// Secrets from the process environment and from `<root>/.env` (when it parses).
    pub fn from_env(root: &Path) -> Self {
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        if let Ok(iter) = dotenvy::from_path_iter(root.join(".env")) {
            vars.extend(iter.flatten());
        }
        Self::from_vars(vars)
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut secrets: Vec<String> = vars
            .into_iter()
            .filter(|(k, v)| is_secret_name(k) && v.trim().len() >= MIN_SECRET)
            .map(|(_, v)| v.trim().to_owned())
            .collect();
        // Longest first, so a key that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every secret and every key-shaped token replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        redact_key_shapes(&out)
    }
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `sk-` followed by at least 16 key characters, not inside a longer word.
fn redact_key_shapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(off) = text[i..].find("sk-") {
        let start = i + off;
        let boundary = start == 0 || !key_char(bytes[start - 1]);
        let mut end = start + 3;
        while end < bytes.len() && key_char(bytes[end]) {
            end += 1;
        }
        if boundary && end - (start + 3) >= KEY_TAIL {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        i = end.max(start + 3);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_secrets_and_key_shapes_are_replaced() {
        let r = Redactor::from_vars([
            (
                "ANTHROPIC_API_KEY".to_owned(),
                "abcdefgh12345678".to_owned(),
            ),
            ("HOME".to_owned(), "/root/not-a-secret".to_owned()),
            ("SHORT_TOKEN".to_owned(), "abc".to_owned()),
        ]);
        assert_eq!(
            r.apply("key=abcdefgh12345678 home=/root/not-a-secret abc"),
            "key=[REDACTED] home=/root/not-a-secret abc"
        );
        assert_eq!(
            r.apply("Bearer sk-ant-api03-AAAAAAAAAAAAAAAAAAAA, task-sk-x"),
            "Bearer [REDACTED], task-sk-x"
        );
        assert_eq!(
            r.apply("risk-assessment-of-the-day-plan"),
            "risk-assessment-of-the-day-plan"
        );
    }
}
