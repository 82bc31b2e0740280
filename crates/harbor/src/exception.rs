//! Harbor's exception types (`exception_info.exception_type`, the Python class name), and what
//! each one means for us: whether it is infrastructure (reported apart, never read as a score)
//! and whether a job retries it. A new type has to be placed in both matches below.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! exception_types {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A trial's exception type. Serialized as Harbor's class name; a name we do not know
        /// (from another Harbor version, say) is kept as it is in [`ExceptionType::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ExceptionType {
            $($(#[$doc])* $name,)*
            /// Any other name, kept verbatim.
            Other(String),
        }

        impl ExceptionType {
            /// Harbor's name of the type.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    Self::Other(name) => name,
                }
            }

            /// The type with this name; unknown names become [`ExceptionType::Other`].
            pub fn from_name(name: &str) -> Self {
                match name {
                    $(stringify!($name) => Self::$name,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

exception_types! {
    /// The agent ran out of its time; the verifier still runs.
    AgentTimeoutError,
    /// The agent's process exited non-zero; the verifier still runs.
    NonZeroAgentExitCodeError,
    /// The agent's setup ran out of time.
    AgentSetupTimeoutError,
    /// The environment did not start in time.
    EnvironmentStartTimeoutError,
    /// The task's healthcheck kept failing.
    HealthcheckError,
    /// `tests/` could not be copied into the sandbox.
    AddTestsDirError,
    /// `tests/test.sh` ran out of time.
    VerifierTimeoutError,
    /// The verifier wrote neither `reward.txt` nor `reward.json`; also when it could not run
    /// at all in the sandbox the agent left (the message says what broke).
    RewardFileNotFoundError,
    /// The reward file is empty.
    RewardFileEmptyError,
    /// The reward file does not parse.
    VerifierOutputParseError,
    /// A file the agent needs is missing from the task (the oracle without `solve.sh`).
    FileNotFoundError,
    /// The sandbox failed, or anything else went wrong (Harbor's catch-all).
    RuntimeError,
    /// The Docker host the trial ran on stopped answering and was drained from the pool: what
    /// the trial saw says nothing of the agent. Ours; a job reruns it on another host without
    /// counting it against its retries.
    SandboxHostLostError,
    /// The model provider stayed unavailable after its retries.
    ProviderUnavailableError,
    /// The account is out of credit or quota.
    ApiUsageLimitError,
    /// The model refused on safety grounds.
    AgentSafetyRefusalError,
    /// The provider rejected the key.
    AgentAuthenticationError,
    /// The provider does not know the model.
    ModelNotFoundError,
    /// The model does not take the parameters asked for.
    UnsupportedModelParametersError,
    /// The harness let the context overflow the model's window.
    ContextLengthExceededError,
    /// The provider refused what the harness asked for (e.g. `max_tokens` above the limit).
    ModelRequestError,
    /// A test's scripted model went off its script.
    ScriptedModelError,
}

impl ExceptionType {
    /// Whether the failure is the infrastructure's (image builds, container starts, the
    /// daemon, the model provider, the setup) rather than something the agent or the task
    /// did. Infrastructure failures are reported apart and never read as a score.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Self::AgentTimeoutError
            | Self::NonZeroAgentExitCodeError
            | Self::VerifierTimeoutError
            | Self::RewardFileNotFoundError
            | Self::RewardFileEmptyError
            | Self::VerifierOutputParseError
            // The harness let its context overflow, or asked the model for what it refuses:
            // properties of the agent being measured.
            | Self::ContextLengthExceededError
            | Self::ModelRequestError => false,
            Self::AgentSetupTimeoutError
            | Self::EnvironmentStartTimeoutError
            | Self::HealthcheckError
            | Self::AddTestsDirError
            | Self::FileNotFoundError
            | Self::RuntimeError
            | Self::SandboxHostLostError
            | Self::ProviderUnavailableError
            | Self::ApiUsageLimitError
            | Self::AgentSafetyRefusalError
            | Self::AgentAuthenticationError
            | Self::ModelNotFoundError
            | Self::UnsupportedModelParametersError
            | Self::ScriptedModelError
            | Self::Other(_) => true,
        }
    }

    /// Whether a job with retries left runs the trial again. The types that are a valid
    /// measurement, or that another attempt cannot fix, are not retried (Harbor's default
    /// `RetryConfig.exclude_exceptions`, plus our model errors).
    pub fn is_retried(&self) -> bool {
        match self {
            Self::AgentTimeoutError
            | Self::VerifierTimeoutError
            | Self::RewardFileNotFoundError
            | Self::RewardFileEmptyError
            | Self::VerifierOutputParseError
            | Self::ApiUsageLimitError
            | Self::AgentSafetyRefusalError
            | Self::AgentAuthenticationError
            | Self::ModelNotFoundError
            | Self::UnsupportedModelParametersError
            | Self::ContextLengthExceededError
            | Self::ModelRequestError
            | Self::ScriptedModelError => false,
            Self::NonZeroAgentExitCodeError
            | Self::AgentSetupTimeoutError
            | Self::EnvironmentStartTimeoutError
            | Self::HealthcheckError
            | Self::AddTestsDirError
            | Self::FileNotFoundError
            | Self::RuntimeError
            | Self::SandboxHostLostError
            | Self::ProviderUnavailableError
            | Self::Other(_) => true,
        }
    }
}

impl fmt::Display for ExceptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExceptionType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExceptionType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Self::from_name(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for name in ["AgentTimeoutError", "RuntimeError", "ScriptedModelError"] {
            let t = ExceptionType::from_name(name);
            assert!(!matches!(t, ExceptionType::Other(_)), "{name} is known");
            assert_eq!(serde_json::to_value(&t).unwrap(), name);
        }
        let t: ExceptionType = serde_json::from_value("DownloadVerifierDirError".into()).unwrap();
        assert_eq!(t, ExceptionType::Other("DownloadVerifierDirError".into()));
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            "DownloadVerifierDirError"
        );
    }

    #[test]
    fn infrastructure_and_retries() {
        use ExceptionType as E;
        assert!(!E::AgentTimeoutError.is_infrastructure());
        assert!(!E::AgentTimeoutError.is_retried());
        assert!(!E::RewardFileNotFoundError.is_infrastructure());
        assert!(E::RuntimeError.is_infrastructure() && E::RuntimeError.is_retried());
        assert!(E::EnvironmentStartTimeoutError.is_infrastructure());
        assert!(
            E::SandboxHostLostError.is_infrastructure() && E::SandboxHostLostError.is_retried()
        );
        // A non-zero exit is the agent's, and still worth another attempt (as in Harbor).
        assert!(!E::NonZeroAgentExitCodeError.is_infrastructure());
        assert!(E::NonZeroAgentExitCodeError.is_retried());
        // A broken script is loud, never a score, and never retried.
        assert!(E::ScriptedModelError.is_infrastructure() && !E::ScriptedModelError.is_retried());
        let unknown = E::Other("SomethingNewError".into());
        assert!(unknown.is_infrastructure() && unknown.is_retried());
    }
}
