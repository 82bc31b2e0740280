//! API keys that cannot be printed by accident.

use std::fmt;

/// An API key. `Debug` and `Display` never show it; only [`ApiKey::expose`] does, and the only
/// callers are the functions that put it into an HTTP header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself. Call only to build an auth header, and never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_never_formatted() {
        let key = ApiKey::new("sk-very-secret-value");
        assert_eq!(format!("{key:?} {key}"), "ApiKey([REDACTED]) [REDACTED]");
        assert_eq!(key.expose(), "sk-very-secret-value");
    }
}
