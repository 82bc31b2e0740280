//! The provider-neutral model interface.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;
use crate::types::{ModelRequest, ModelResponse};

/// A model that completes conversations. Object-safe: agents hold an `Arc<dyn Model>`.
#[async_trait]
pub trait Model: Send + Sync + fmt::Debug {
    /// One call: the conversation in, the assistant turn out. Retries, backoff and accounting
    /// happen inside; an error is final.
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError>;

    /// The full model name, `provider/model` (`anthropic/claude-sonnet-4-5`).
    fn name(&self) -> &str;

    /// Which provider serves it.
    fn provider(&self) -> ProviderKind;

    /// The base URL requests go to, for HTTP providers.
    fn endpoint(&self) -> Option<&str> {
        None
    }
}

/// The APIs we speak, named as in model strings (`anthropic/…`, `openai-responses/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderKind {
    /// Anthropic Messages.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// OpenAI Chat Completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// OpenAI Responses.
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
    /// Chat Completions on vLLM, llama.cpp, Ollama or any other compatible server.
    #[serde(rename = "openai-compatible")]
    OpenAiCompatible,
    /// Turns read from a script file, for tests.
    #[serde(rename = "scripted")]
    Scripted,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        Self::Anthropic,
        Self::OpenAi,
        Self::OpenAiResponses,
        Self::OpenAiCompatible,
        Self::Scripted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::OpenAiResponses => "openai-responses",
            Self::OpenAiCompatible => "openai-compatible",
            Self::Scripted => "scripted",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                LlmError::Config(format!(
                    "unknown provider {s:?}: expected one of {}",
                    known.join(", ")
                ))
            })
    }
}
