//! Where keys and base URLs come from: the process environment and a `.env` file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::LlmError;

/// Environment variable names read by this crate (no string literals elsewhere).
pub mod vars {
    pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
    pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
    pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
    pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
}

/// A read-only view of environment variables: the process environment first, then the values of
/// a `.env` file. Reading a `.env` file never changes the process environment (which is shared by
/// every concurrent trial and unsafe to mutate in a multi-threaded program).
///
/// `Debug` shows variable names only, since values are mostly keys.
#[derive(Clone, Default)]
pub struct EnvSource {
    use_process: bool,
    vars: BTreeMap<String, String>,
}

impl EnvSource {
    /// The process environment plus `./.env` when it exists.
    pub fn current() -> Result<Self, LlmError> {
        Self::process_with_dotenv(Path::new(".env"))
    }

    /// The process environment only.
    pub fn process() -> Self {
        Self {
            use_process: true,
            vars: BTreeMap::new(),
        }
    }

    /// The process environment, then the given `.env` file if it exists. A file that exists but
    /// does not parse is an error (silently ignoring it would hide a missing key).
    pub fn process_with_dotenv(path: &Path) -> Result<Self, LlmError> {
        let mut env = Self::process();
        if path.is_file() {
            let iter = dotenvy::from_path_iter(path).map_err(|err| {
                LlmError::Config(format!("cannot read {}: {err}", path.display()))
            })?;
            for item in iter {
                // The error text of dotenvy quotes the offending line, which may hold a key:
                // report only the file.
                let (name, value) = item.map_err(|_| {
                    LlmError::Config(format!("{} has a line that does not parse", path.display()))
                })?;
                env.vars.insert(name, value);
            }
        }
        Ok(env)
    }

    /// Exactly these variables and nothing from the process (for tests and embedding).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            use_process: false,
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Adds or replaces a variable (it is looked up after the process environment).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// A variable's value; empty values count as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let from_process = if self.use_process {
            std::env::var(name).ok()
        } else {
            None
        };
        from_process
            .or_else(|| self.vars.get(name).cloned())
            .filter(|value| !value.trim().is_empty())
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvSource")
            .field("use_process", &self.use_process)
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_is_read_without_touching_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nAUTOAGENT_TEST_DOTENV_KEY=\"sk-from-file-123456\"\nexport OTHER=1\n",
        )
        .unwrap();
        let env = EnvSource::process_with_dotenv(&path).unwrap();
        assert_eq!(
            env.get("AUTOAGENT_TEST_DOTENV_KEY").as_deref(),
            Some("sk-from-file-123456")
        );
        assert_eq!(env.get("OTHER").as_deref(), Some("1"));
        assert!(std::env::var("AUTOAGENT_TEST_DOTENV_KEY").is_err());
        let debug = format!("{env:?}");
        assert!(!debug.contains("sk-from-file"), "{debug}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = EnvSource::from_vars([("A", ""), ("B", "x")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get("B").as_deref(), Some("x"));
    }
}
