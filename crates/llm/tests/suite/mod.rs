//! Integration tests: every provider client against a local wiremock server replaying the wire
//! shapes of llm-wire.md. Shared helpers live in `support`.

mod anthropic;
mod check;
mod config;
mod openai_chat;
mod openai_responses;
mod resilience;
mod scripted;
mod secrets;
mod streaming;
mod support;
