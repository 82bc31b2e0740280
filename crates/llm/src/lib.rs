//! autoagent-llm: every model call of autoagent goes through this crate.
//!
//! Layers, bottom up:
//! * [`transport`]: one HTTP POST ([`HttpTransport`], reqwest by default); [`retry`]: backoff
//!   with jitter honouring `retry-after`.
//! * [`wire`]: pure functions from neutral requests to each API's JSON and back (Anthropic
//!   Messages, OpenAI Chat Completions, OpenAI Responses), unit-tested with fixtures.
//! * [`Model`]: the provider-neutral interface; [`build_model`] turns `provider/model` plus
//!   [`ModelConfig`] into an `Arc<dyn Model>`. [`ScriptedModel`] replays a script for tests.
//!
//! Usage is normalised ([`Usage::input_tokens`] excludes cached tokens everywhere) and priced
//! from [`price::SHIPPED_PRICES`] plus the user's table; unknown models cost `None`.
//! API keys never appear in errors, logs or `Debug` output.

pub mod check;
mod client;
pub mod config;
pub mod env;
pub mod error;
pub mod governor;
pub mod model;
pub mod price;
pub mod retry;
pub mod scripted;
pub mod secret;
pub mod transport;
pub mod types;
pub mod wire;

pub use check::{CheckReport, check, check_model, explain};
pub use client::HttpModel;
pub use config::{DEFAULT_MODEL, ModelConfig, build_model, build_model_with, parse_model_name};
pub use env::EnvSource;
pub use error::{ErrorKind, LlmError};
pub use governor::{Governor, GovernorStatus};
pub use model::{Model, ProviderKind};
pub use price::{Price, PriceTable};
pub use retry::RetryPolicy;
pub use scripted::{Coin, Expect, Script, ScriptToolCall, ScriptTurn, ScriptedModel, coin_uniform};
pub use secret::ApiKey;
pub use transport::{
    ByteStream, HttpRequest, HttpResponse, HttpTransport, ReqwestTransport, StreamingResponse,
    TransportError,
};
pub use types::{
    ContentBlock, Message, ModelRequest, ModelResponse, Reasoning, ReasoningEffort, Role,
    StopReason, ToolCall, ToolChoice, ToolResult, ToolSpec, Usage,
};
