//! The `scripted` model: answers with turns read from a file, for tests of everything above
//! this crate. It fails loudly (an [`ErrorKind::Script`] error) when the script runs out or a
//! request does not meet a turn's expectations.
//!
//! ```toml
//! model = "scripted-demo"          # optional: the model id reported in responses
//!
//! [[turns]]
//! text = "I'll list the files."
//! reasoning = "The user wants a listing."
//! tool_calls = [{ name = "bash", arguments = { command = "ls /app" } }]
//! expect = { system_contains = "terminal agent", tools_include = ["bash"] }
//!
//! [[turns]]
//! agent = "checker"                # consumed only by requests with agent = "checker"
//! text = "Looks right."
//!
//! [[turns]]
//! text = "Done."
//! usage = { input_tokens = 1200, output_tokens = 40 }
//! cost_usd = 0.004
//! expect = { last_tool_result_contains = "main.py", last_tool_result_is_error = false }
//! ```
//!
//! JSON (`.json` files) has the same shape: `{"turns": [{"text": "…", "tool_calls": […]}]}`.
//!
//! # Coins
//!
//! A turn with a `coin` answers only with probability `p`, so that tests (of the optimizer) get
//! task agents whose success is random with a known, seeded probability that the harness can
//! raise:
//!
//! ```toml
//! [[turns]]
//! # heads: this turn is the answer
//! tool_calls = [{ name = "bash", arguments = { command = "echo ok > /app/out.txt" } }]
//! coin = { seed = 7, p = 0.5, p_from_user = "pass-probability=", add_from_system = "boost=", tails = { tool_calls = [{ name = "bash", arguments = { command = "echo no > /app/out.txt" } }] } }
//!
//! [[turns]]
//! text = "Done."
//! ```
//!
//! * One draw per request that reaches the turn: heads (probability p) and the turn itself
//!   answers; tails and `tails` (a whole turn, without a coin or an `agent` of its own) answers
//!   in its place. Either way the script then moves on to the next turn: a coin occupies one
//!   position. The coin turn's `expect` is checked before the draw, whatever it shows; the
//!   `tails` turn's own `expect`, if any, is checked too when it answers.
//! * p is `p` (default 0.5, within [0, 1]); but when `p_from_user` is given and the text of the
//!   request's first user message contains that marker, the number right after its first
//!   occurrence (`pass-probability=0.3`) replaces it. Then, when `add_from_system` is given and
//!   the system prompt contains that marker, the number after it is added (`boost=0.4`, may be
//!   negative). The sum is clamped to [0, 1]. A marker followed by no number is a script error
//!   quoting the marker and the text after it.
//! * The k-th draw (k = 0, 1, …, counted within the process) for a given seed, first user
//!   text, system prompt and turn (0-based index in the file) is the uniform number
//!   [`coin_uniform`] of those values and k; heads iff it is below p. Trials of one task thus
//!   draw the same sequence in every run, whatever the order in which they (or other tasks'
//!   trials) reach the coin.
//! * The outcome is recorded as a reasoning block placed first in the response, e.g.
//!   `coin: heads (p=0.30)` or `coin: tails (p=0.30)` (p to two decimals); the agent puts it in
//!   the step's `reasoning_content`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{ErrorKind, LlmError};
use crate::model::{Model, ProviderKind};
use crate::types::{
    ContentBlock, Message, ModelRequest, ModelResponse, Reasoning, Role, StopReason, ToolCall,
    Usage,
};

/// Model id reported when the script names none.
const DEFAULT_SCRIPT_MODEL: &str = "scripted";
/// How much of the seen text an expectation failure quotes.
const MAX_QUOTE: usize = 300;
/// How much of the text after a coin marker a bad-number error quotes: the number is short.
const MAX_MARKER_QUOTE: usize = 40;
/// Domain separation for the coin hash, so its draws are not some other hash's of the same bytes.
const COIN_HASH_DOMAIN: &[u8] = b"autoagent scripted coin v1\0";

/// A parsed script: load once, share with [`Arc`], and give every conversation its own
/// [`ScriptedModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The model id reported in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(alias = "turn")]
    pub turns: Vec<ScriptTurn>,
}

/// One scripted assistant turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTurn {
    /// Only requests from this agent ([`ModelRequest::agent`]) consume the turn. Untagged turns
    /// serve the main agent, and sub-agents that have no tagged turns of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ScriptToolCall>,
    /// Defaults to `tool_use` when the turn has tool calls, `end_turn` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The call's cost; absent means unknown (`None`), as for any unpriced model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Instead of answering, fail with an error of this kind (to test error handling above),
    /// e.g. `fail = "infrastructure"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<ErrorKind>,
    /// Checks on the incoming request.
    #[serde(default, skip_serializing_if = "Expect::is_empty")]
    pub expect: Expect,
    /// Answer with this turn only with a probability; otherwise with the coin's `tails` turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coin: Option<Coin>,
}

/// A seeded coin on a turn: heads (probability [`Coin::probability`]) the turn answers, tails
/// the [`Coin::tails`] turn answers in its place. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coin {
    /// Seeds the draws (with the first user text, the system prompt and the turn).
    pub seed: u64,
    /// The probability of heads when the first user message gives none; within [0, 1].
    #[serde(default = "default_coin_p")]
    pub p: f64,
    /// A marker in the first user message, followed by the probability of heads, which then
    /// replaces `p` (e.g. `"pass-probability="` for `pass-probability=0.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_from_user: Option<String>,
    /// A marker in the system prompt, followed by a number added to p (e.g. `"boost="` for
    /// `boost=0.4`): how a harness raises the probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_from_system: Option<String>,
    /// The turn that answers on tails; it may have no coin or agent of its own.
    pub tails: Box<ScriptTurn>,
}

fn default_coin_p() -> f64 {
    0.5
}

impl Coin {
    /// The probability of heads for `req`: `p`, or the number after `p_from_user` in the first
    /// user message; plus the number after `add_from_system` in the system prompt; clamped to
    /// [0, 1]. Fails (a [`LlmError::Script`]) when a marker is present without a number after it.
    pub fn probability(&self, req: &ModelRequest) -> Result<f64, LlmError> {
        let mut p = self.p;
        if let Some(marker) = &self.p_from_user
            && let Some(given) = number_after(&first_user_text(req), marker, "first user message")?
        {
            p = given;
        }
        if let Some(marker) = &self.add_from_system
            && let Some(boost) =
                number_after(req.system.as_deref().unwrap_or(""), marker, "system prompt")?
        {
            p += boost;
        }
        Ok(p.clamp(0.0, 1.0))
    }

    /// What the script's types cannot say about a coin, checked when the script is read.
    fn problem(&self) -> Option<String> {
        if self.tails.coin.is_some() {
            return Some("the coin's tails turn has a coin of its own; coins do not nest".into());
        }
        if self.tails.agent.is_some() {
            return Some(
                "the coin's tails turn names an agent; the coin turn's own agent decides who \
                 consumes it"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.p) {
            return Some(format!("coin p = {} is outside [0, 1]", self.p));
        }
        for (field, marker) in [
            ("p_from_user", &self.p_from_user),
            ("add_from_system", &self.add_from_system),
        ] {
            if marker.as_deref() == Some("") {
                // An empty marker would match at the start of every text.
                return Some(format!("coin {field} is empty"));
            }
        }
        None
    }
}

/// The text of the request's first user message ("" when it has none).
fn first_user_text(req: &ModelRequest) -> String {
    req.messages
        .iter()
        .find(|m| m.role == Role::User)
        .map(Message::text)
        .unwrap_or_default()
}

/// The number right after the first `marker` in `text`: `None` when the marker is absent, an
/// error when it is not followed by a (finite) number.
fn number_after(text: &str, marker: &str, place: &str) -> Result<Option<f64>, LlmError> {
    let Some(at) = text.find(marker) else {
        return Ok(None);
    };
    let rest = &text[at + marker.len()..];
    let number = &rest[..number_prefix_len(rest)];
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(LlmError::Script(format!(
            "coin: the {place} has the marker {marker:?} but no number after it: {}",
            quote_at_most(rest, MAX_MARKER_QUOTE)
        ))),
    }
}

/// The length of the decimal number at the start of `s` (`[+-]digits[.digits][e[+-]digits]`),
/// 0 when there is none. Scanned rather than split at whitespace so that a number ending a
/// sentence (`pass-probability=0.3.`) or followed by other text still reads.
fn number_prefix_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let digits = |from: usize| {
        bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let whole = digits(end);
    end += whole;
    let mut fraction = 0;
    if bytes.get(end) == Some(&b'.') {
        fraction = digits(end + 1);
        if whole > 0 || fraction > 0 {
            end += 1 + fraction;
        }
    }
    if whole == 0 && fraction == 0 {
        return 0;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        let exponent = digits(end + 1 + sign);
        if exponent > 0 {
            end += 1 + sign + exponent;
        }
    }
    end
}

/// Draws made so far, per coin key (seed, first user text, system prompt, turn), in the whole
/// process.
///
/// Process-wide because every trial builds its own [`ScriptedModel`] (`build_model` reads the
/// script anew for each conversation): a counter per model would restart at 0 and every trial
/// of a task would see the same draw. Per key, not one global count, because a task's trials
/// are exchangeable: the trials of a task that reach its coin take draws 0, 1, 2, … of that
/// task's own sequence, so each task's pass count over a run is independent of the order in
/// which concurrent trials (of it or of other tasks) happen to start.
static COIN_DRAWS: LazyLock<Mutex<HashMap<[u8; 32], u64>>> = LazyLock::new(Default::default);

/// The key of a coin's draw sequence: a hash, so the map does not keep whole system prompts.
fn coin_key(seed: u64, first_user: &str, system: &str, turn: usize) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(COIN_HASH_DOMAIN);
    hash.update(seed.to_le_bytes());
    // Lengths before texts, so that ("ab", "c") and ("a", "bc") are different keys.
    for text in [first_user, system] {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update((turn as u64).to_le_bytes());
    hash.finalize().into()
}

/// The k-th uniform number in [0, 1) of a key's sequence.
fn key_uniform(key: &[u8; 32], k: u64) -> f64 {
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(k.to_le_bytes())
        .finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    // The top 53 bits: every value is an exact f64, and 1.0 cannot come out.
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
}

/// The k-th draw (k counted from 0 within the process) of the coin with `seed` on the turn at
/// 0-based index `turn`, for a request whose first user message has the text `first_user` and
/// whose system prompt is `system` ("" when absent): a uniform number in [0, 1), heads iff below
/// p. A pure function of its arguments, so tests can predict a run's outcomes.
pub fn coin_uniform(seed: u64, first_user: &str, system: &str, turn: usize, k: u64) -> f64 {
    key_uniform(&coin_key(seed, first_user, system, turn), k)
}

/// Takes the next draw of a key's sequence: its uniform number.
fn next_draw(key: [u8; 32]) -> f64 {
    // A panic while holding the lock cannot leave the map inconsistent (one integer write).
    let mut draws = COIN_DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    let count = draws.entry(key).or_insert(0);
    let k = *count;
    *count += 1;
    key_uniform(&key, k)
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptToolCall {
    /// Defaults to `call_<turn>_<n>` (1-based turn in the file, 0-based call in the turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Expectations on the request that a turn answers. All given checks must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The system prompt contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_contains: Option<String>,
    /// The text of the last user message that has text contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_user_contains: Option<String>,
    /// The last tool result in the conversation contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool_result_contains: Option<String>,
    /// The last tool result in the conversation has this error flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool_result_is_error: Option<bool>,
    /// These tools are offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_include: Vec<String>,
    /// These tools are not offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_exclude: Vec<String>,
    /// The conversation has exactly this many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_len: Option<usize>,
}

impl Expect {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The first expectation that `req` does not meet, described as "expected …, saw …".
    fn violation(&self, req: &ModelRequest) -> Option<String> {
        if let Some(needle) = &self.system_contains {
            let system = req.system.as_deref().unwrap_or("");
            if !system.contains(needle.as_str()) {
                return Some(format!(
                    "expected the system prompt to contain {needle:?}, saw {}",
                    quote(system)
                ));
            }
        }
        if let Some(needle) = &self.last_user_contains {
            let last_user = req
                .messages
                .iter()
                .rev()
                .filter(|m| m.role == Role::User)
                .map(Message::text)
                .find(|text| !text.is_empty())
                .unwrap_or_default();
            if !last_user.contains(needle.as_str()) {
                return Some(format!(
                    "expected the last user text to contain {needle:?}, saw {}",
                    quote(&last_user)
                ));
            }
        }
        let last_result = req
            .messages
            .iter()
            .rev()
            .find_map(|m| m.tool_results_iter().last());
        if let Some(needle) = &self.last_tool_result_contains {
            match last_result {
                Some(result) if result.content.contains(needle.as_str()) => {}
                Some(result) => {
                    return Some(format!(
                        "expected the last tool result to contain {needle:?}, saw {}",
                        quote(&result.content)
                    ));
                }
                None => {
                    return Some(format!(
                        "expected the last tool result to contain {needle:?}, saw no tool result"
                    ));
                }
            }
        }
        if let Some(is_error) = self.last_tool_result_is_error {
            match last_result {
                Some(result) if result.is_error == is_error => {}
                Some(result) => {
                    return Some(format!(
                        "expected the last tool result to have is_error = {is_error}, saw \
                         is_error = {} with {}",
                        result.is_error,
                        quote(&result.content)
                    ));
                }
                None => {
                    return Some(format!(
                        "expected a last tool result with is_error = {is_error}, saw no tool result"
                    ));
                }
            }
        }
        let offered: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        if let Some(missing) = self
            .tools_include
            .iter()
            .find(|t| !offered.contains(&t.as_str()))
        {
            return Some(format!(
                "expected tool {missing:?} to be offered, saw tools {offered:?}"
            ));
        }
        if let Some(present) = self
            .tools_exclude
            .iter()
            .find(|t| offered.contains(&t.as_str()))
        {
            return Some(format!(
                "expected tool {present:?} not to be offered, saw tools {offered:?}"
            ));
        }
        if let Some(len) = self.messages_len
            && req.messages.len() != len
        {
            return Some(format!(
                "expected {len} messages, saw {}",
                req.messages.len()
            ));
        }
        None
    }
}

fn quote(text: &str) -> String {
    quote_at_most(text, MAX_QUOTE)
}

/// `text` in quotes, cut after about `max` bytes (at a character boundary).
fn quote_at_most(text: &str, max: usize) -> String {
    if text.len() <= max {
        return format!("{text:?}");
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

impl Script {
    /// Reads a script: JSON when the file ends in `.json`, TOML otherwise.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            LlmError::Config(format!("cannot read script {}: {err}", path.display()))
        })?;
        let script: Script = if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::from_str(&text).map_err(|err| err.to_string())
        } else {
            toml::from_str(&text).map_err(|err| err.to_string())
        }
        .map_err(|err| LlmError::Config(format!("invalid script {}: {err}", path.display())))?;
        if script.turns.is_empty() {
            return Err(LlmError::Config(format!(
                "script {} has no turns",
                path.display()
            )));
        }
        if let Some(problem) = script.problem() {
            return Err(LlmError::Config(format!(
                "invalid script {}: {problem}",
                path.display()
            )));
        }
        Ok(script)
    }

    /// Checks what the types cannot (coins: no nesting, p within [0, 1], non-empty markers);
    /// [`Script::from_file`] does so. A [`LlmError::Config`] naming the turn.
    pub fn validate(&self) -> Result<(), LlmError> {
        match self.problem() {
            None => Ok(()),
            Some(problem) => Err(LlmError::Config(format!("invalid script: {problem}"))),
        }
    }

    fn problem(&self) -> Option<String> {
        self.turns.iter().enumerate().find_map(|(i, turn)| {
            let problem = turn.coin.as_ref()?.problem()?;
            Some(format!("turn {}: {problem}", i + 1))
        })
    }

    /// The indices (into `turns`) that requests from `agent` consume, in order.
    fn queue(&self, agent: Option<&str>) -> Vec<usize> {
        let tagged = |tag: Option<&str>| -> Vec<usize> {
            self.turns
                .iter()
                .enumerate()
                .filter(|(_, turn)| turn.agent.as_deref() == tag)
                .map(|(i, _)| i)
                .collect()
        };
        match agent {
            Some(name) if self.turns.iter().any(|t| t.agent.as_deref() == Some(name)) => {
                tagged(Some(name))
            }
            _ => tagged(None),
        }
    }
}

/// A model that replays a [`Script`]. Each instance has its own cursor: create one per
/// conversation (trial, agent run). Sub-agent calls made through the same instance consume the
/// turns tagged with their agent name, or else the next untagged turns, in order.
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    source: String,
    script: Arc<Script>,
    /// Position in each agent's queue ("" is the untagged queue).
    cursors: Mutex<HashMap<String, usize>>,
}

impl ScriptedModel {
    /// A fresh model over a shared script; `source` names it in errors (usually the path).
    pub fn new(script: Arc<Script>, source: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            name: format!("{}/{source}", ProviderKind::Scripted),
            source,
            script,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    /// Loads a script file and starts at its first turn.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let script = Script::from_file(path)?;
        Ok(Self::new(Arc::new(script), path.display().to_string()))
    }

    /// The script this model replays.
    pub fn script(&self) -> &Arc<Script> {
        &self.script
    }

    /// Turns not consumed yet, over all agents.
    pub fn remaining(&self) -> usize {
        let cursors = self.lock_cursors();
        let used: usize = cursors.values().sum();
        self.script.turns.len().saturating_sub(used)
    }

    /// Fails when turns are left: a test should usually consume its whole script.
    pub fn finish(&self) -> Result<(), LlmError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(LlmError::Script(format!(
                "script {}: {left} of {} turns were never requested",
                self.source,
                self.script.turns.len()
            ))),
        }
    }

    fn lock_cursors(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // A panic while holding the lock cannot leave the map inconsistent (one integer write).
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Draws `coin` (on `turn`, at `index` in the file) for `req`: the turn that answers (`turn`
    /// on heads, the coin's tails turn on tails) and the outcome to record.
    fn toss<'a>(
        &self,
        coin: &'a Coin,
        turn: &'a ScriptTurn,
        index: usize,
        req: &ModelRequest,
        at: &str,
    ) -> Result<(&'a ScriptTurn, Option<String>), LlmError> {
        let in_script =
            |problem: String| LlmError::Script(format!("script {}, {at}: {problem}", self.source));
        let p = coin.probability(req).map_err(|err| match err {
            LlmError::Script(problem) => in_script(problem),
            other => other,
        })?;
        let key = coin_key(
            coin.seed,
            &first_user_text(req),
            req.system.as_deref().unwrap_or(""),
            index,
        );
        if next_draw(key) < p {
            return Ok((turn, Some(format!("coin: heads (p={p:.2})"))));
        }
        let tails = coin.tails.as_ref();
        // Scripts read from files are validated; one built in code may not be.
        if tails.coin.is_some() {
            return Err(in_script(
                "the coin's tails turn has a coin of its own; coins do not nest".into(),
            ));
        }
        if let Some(problem) = tails.expect.violation(req) {
            return Err(in_script(format!("(tails) {problem}")));
        }
        Ok((tails, Some(format!("coin: tails (p={p:.2})"))))
    }

    /// Takes the next turn for the request's agent.
    fn next_turn(&self, req: &ModelRequest) -> Result<(usize, usize), LlmError> {
        let queue = self.script.queue(req.agent.as_deref());
        let key = match req.agent.as_deref() {
            Some(name)
                if self
                    .script
                    .turns
                    .iter()
                    .any(|t| t.agent.as_deref() == Some(name)) =>
            {
                name.to_owned()
            }
            _ => String::new(),
        };
        let mut cursors = self.lock_cursors();
        let position = cursors.entry(key.clone()).or_insert(0);
        let Some(&index) = queue.get(*position) else {
            let who = if key.is_empty() {
                "the main agent".to_owned()
            } else {
                format!("agent {key:?}")
            };
            return Err(LlmError::Script(format!(
                "script {} ran out: request #{} from {who}, but the script has only {} turn(s) \
                 for it (last user text: {})",
                self.source,
                *position + 1,
                queue.len(),
                quote(
                    &req.messages
                        .iter()
                        .rev()
                        .find(|m| m.role == Role::User)
                        .map(Message::text)
                        .unwrap_or_default()
                )
            )));
        };
        *position += 1;
        Ok((index, *position))
    }
}

#[async_trait]
impl Model for ScriptedModel {
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError> {
        let started = Instant::now();
        let (index, call) = self.next_turn(req)?;
        let turn = &self.script.turns[index];
        let turn_no = index + 1;
        let at = match &turn.agent {
            Some(agent) => format!("turn {turn_no} (agent {agent:?}, call {call})"),
            None => format!("turn {turn_no} (call {call})"),
        };
        if let Some(problem) = turn.expect.violation(req) {
            return Err(LlmError::Script(format!(
                "script {}, {at}: {problem}",
                self.source
            )));
        }
        let (turn, coin_note) = match &turn.coin {
            None => (turn, None),
            Some(coin) => self.toss(coin, turn, index, req, &at)?,
        };
        if let Some(kind) = turn.fail {
            let outcome = coin_note
                .as_deref()
                .map(|note| format!(" ({note})"))
                .unwrap_or_default();
            return Err(LlmError::Failed {
                provider: ProviderKind::Scripted.as_str().to_owned(),
                kind,
                code: kind.as_str().to_owned(),
                message: format!("scripted failure at {at}{outcome}"),
                request_id: None,
                attempts: 1,
            });
        }

        let mut content = Vec::new();
        if let Some(note) = coin_note {
            // First, so the outcome leads the step's reasoning in the trajectory.
            content.push(ContentBlock::Reasoning(Reasoning {
                text: note,
                ..Reasoning::default()
            }));
        }
        if let Some(reasoning) = &turn.reasoning {
            content.push(ContentBlock::Reasoning(Reasoning {
                text: reasoning.clone(),
                ..Reasoning::default()
            }));
        }
        if let Some(text) = &turn.text {
            content.push(ContentBlock::text(text.clone()));
        }
        for (n, call) in turn.tool_calls.iter().enumerate() {
            content.push(ContentBlock::ToolCall(ToolCall::new(
                call.id
                    .clone()
                    .unwrap_or_else(|| format!("call_{turn_no}_{n}")),
                call.name.clone(),
                call.arguments.clone(),
            )));
        }
        let stop_reason = turn
            .stop_reason
            .clone()
            .unwrap_or(if turn.tool_calls.is_empty() {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            });
        Ok(ModelResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason,
            usage: turn.usage.unwrap_or_default(),
            cost_usd: turn.cost_usd,
            model: self
                .script
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_SCRIPT_MODEL.to_owned()),
            latency: started.elapsed(),
            request_id: None,
            response_id: Some(format!("scripted-{turn_no}")),
            attempts: 1,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::Scripted
    }
}

#[cfg(test)]
mod tests {
    //! Coins. The draw counters are process-wide, so every test uses seeds of its own.

    use serde_json::json;

    use super::*;

    /// The example of the module documentation.
    const EXAMPLE: &str = r#"
[[turns]]
# heads: this turn is the answer
tool_calls = [{ name = "bash", arguments = { command = "echo ok > /app/out.txt" } }]
coin = { seed = 7, p = 0.5, p_from_user = "pass-probability=", add_from_system = "boost=", tails = { tool_calls = [{ name = "bash", arguments = { command = "echo no > /app/out.txt" } }] } }

[[turns]]
text = "Done."
"#;

    fn script(text: &str) -> Arc<Script> {
        let script: Script = toml::from_str(text).unwrap();
        script.validate().unwrap();
        Arc::new(script)
    }

    /// A script whose first turn answers "heads", or "tails" on tails, then "Done.".
    fn heads_or_tails(coin: &str) -> Arc<Script> {
        script(&format!(
            "[[turns]]\ntext = \"heads\"\ncoin = {{ {coin}, tails = {{ text = \"tails\" }} }}\n\n\
             [[turns]]\ntext = \"Done.\"\n"
        ))
    }

    fn coin_note(resp: &ModelResponse) -> Option<&str> {
        match resp.message.content.first() {
            Some(ContentBlock::Reasoning(r)) => Some(r.text.as_str()),
            _ => None,
        }
    }

    /// One trial: a fresh model, as `build_model` makes per conversation; its first answer.
    async fn first_answer(script: &Arc<Script>, req: &ModelRequest) -> ModelResponse {
        ScriptedModel::new(script.clone(), "test")
            .complete(req)
            .await
            .unwrap()
    }

    fn coin(text: &str) -> Coin {
        let turn: ScriptTurn = toml::from_str(&format!("coin = {{ {text} }}")).unwrap();
        turn.coin.unwrap()
    }

    #[test]
    fn coin_p_is_the_user_marker_plus_the_system_boost() {
        let c = coin(
            r#"seed = 1, p = 0.1, p_from_user = "pass-probability=", add_from_system = "boost=", tails = {}"#,
        );
        let p = |system: &str, user: &str| c.probability(&ModelRequest::new(system, user)).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(p("plain", "plain"), 0.1));
        assert!(close(p("plain", "task. pass-probability=0.3."), 0.3));
        assert!(close(p("boost=0.4 is on", "pass-probability=0.3"), 0.7));
        assert!(close(p("boost=-0.05", "x pass-probability=+.25e0 y"), 0.2));
        assert!(close(p("boost=0.4", "no marker"), 0.5));

        // Only the first user message counts (later ones are tool results and nudges).
        let mut req = ModelRequest::new("s", "first");
        req.messages.push(Message::user("pass-probability=0.9"));
        assert!(close(c.probability(&req).unwrap(), 0.1));

        // Without p_from_user the marker is just text.
        let fixed = coin(r#"seed = 1, p = 0.25, tails = {}"#);
        let req = ModelRequest::new("boost=0.5", "pass-probability=0.9");
        assert!(close(fixed.probability(&req).unwrap(), 0.25));
        assert!(close(coin("seed = 1, tails = {}").p, 0.5));
    }

    #[tokio::test]
    async fn coin_p_is_clamped_to_0_and_1() {
        let c = coin(
            r#"seed = 2, p_from_user = "pass-probability=", add_from_system = "boost=", tails = {}"#,
        );
        let p = |system: &str, user: &str| c.probability(&ModelRequest::new(system, user)).unwrap();
        assert_eq!(p("boost=0.4", "pass-probability=0.9"), 1.0);
        assert_eq!(p("boost=-0.5", "pass-probability=0.1"), 0.0);
        assert_eq!(p("", "pass-probability=7"), 1.0);

        // Clamped to 1 every trial is heads, to 0 every trial tails.
        let s = heads_or_tails(
            r#"seed = 1002, p_from_user = "pass-probability=", add_from_system = "boost=""#,
        );
        for _ in 0..50 {
            let heads = ModelRequest::new("boost=0.5", "pass-probability=0.8");
            let resp = first_answer(&s, &heads).await;
            assert_eq!(
                (resp.text().as_str(), coin_note(&resp)),
                ("heads", Some("coin: heads (p=1.00)"))
            );
            let tails = ModelRequest::new("boost=-0.5", "pass-probability=0.2");
            let resp = first_answer(&s, &tails).await;
            assert_eq!(
                (resp.text().as_str(), coin_note(&resp)),
                ("tails", Some("coin: tails (p=0.00)"))
            );
        }
    }

    #[tokio::test]
    async fn a_marker_without_a_number_is_a_script_error() {
        let s = heads_or_tails(
            r#"seed = 1003, p_from_user = "pass-probability=", add_from_system = "boost=""#,
        );
        let model = ScriptedModel::new(s.clone(), "bad.toml");
        let err = model
            .complete(&ModelRequest::new(
                "sys",
                "Do it. pass-probability=high, please",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Script);
        let text = err.to_string();
        assert!(
            text.contains("bad.toml")
                && text.contains("turn 1")
                && text.contains(r#""pass-probability=""#)
                && text.contains(r#""high, please""#),
            "{text}"
        );

        let err = ScriptedModel::new(s, "bad.toml")
            .complete(&ModelRequest::new("boost=", "pass-probability=0.5"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Script);
        let text = err.to_string();
        assert!(
            text.contains("system prompt") && text.contains(r#""boost=""#),
            "{text}"
        );
    }

    #[test]
    fn marker_numbers_end_where_the_number_does() {
        for (text, len) in [
            ("0.3", 3),
            ("0.3.", 3),
            ("0.3, then", 3),
            ("-0.4x", 4),
            ("+.5", 3),
            ("1.", 2),
            ("2e-1!", 4),
            ("3e", 1),
            (".", 0),
            ("-", 0),
            ("abc", 0),
            ("", 0),
        ] {
            assert_eq!(number_prefix_len(text), len, "{text:?}");
        }
    }

    #[test]
    fn a_nested_coin_is_rejected_when_the_script_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("nested.toml");
        std::fs::write(
            &nested,
            "[[turns]]\ntext = \"a\"\n\n[[turns]]\ntext = \"b\"\n\
             coin = { seed = 1, tails = { text = \"c\", coin = { seed = 2, tails = {} } } }\n",
        )
        .unwrap();
        let err = Script::from_file(&nested).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let text = err.to_string();
        assert!(
            text.contains("nested.toml") && text.contains("turn 2") && text.contains("nest"),
            "{text}"
        );

        for (coin, complaint) in [
            ("seed = 1, tails = { agent = \"checker\" }", "agent"),
            ("seed = 1, p = 1.5, tails = {}", "outside [0, 1]"),
            (
                "seed = 1, p_from_user = \"\", tails = {}",
                "p_from_user is empty",
            ),
        ] {
            let s: Script = toml::from_str(&format!("[[turns]]\ncoin = {{ {coin} }}\n")).unwrap();
            let text = s.validate().unwrap_err().to_string();
            assert!(
                text.contains("turn 1") && text.contains(complaint),
                "{text}"
            );
        }

        // The documented example reads.
        let example = dir.path().join("example.toml");
        std::fs::write(&example, EXAMPLE).unwrap();
        let s = Script::from_file(&example).unwrap();
        let c = s.turns[0].coin.as_ref().unwrap();
        assert_eq!((c.seed, c.p), (7, 0.5));
        assert_eq!(c.tails.tool_calls[0].name, "bash");
    }

    #[tokio::test]
    async fn coin_frequencies_are_within_four_standard_errors_of_p() {
        const TRIALS: usize = 2000;
        for (seed, p) in [(1004, 0.2), (1005, 0.8)] {
            let s = heads_or_tails(&format!("seed = {seed}, p = {p}"));
            let req = ModelRequest::new("sys", "task");
            let mut heads = 0;
            for _ in 0..TRIALS {
                if first_answer(&s, &req).await.text() == "heads" {
                    heads += 1;
                }
            }
            let freq = heads as f64 / TRIALS as f64;
            let se = (p * (1.0 - p) / TRIALS as f64).sqrt();
            assert!(
                (freq - p).abs() < 4.0 * se,
                "p = {p}: {heads} heads in {TRIALS} ({freq:.3}, standard error {se:.4})"
            );
        }
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_sequence_in_a_fresh_key_space() {
        // Two tasks' trials interleaved in an arbitrary order: each task still sees draws
        // 0, 1, 2, … of its own sequence, the pure function of (seed, texts, turn, k).
        let p = 0.5;
        let s = heads_or_tails(&format!("seed = 1006, p = {p}"));
        let tasks = ["task A", "task B"];
        let order = [0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1];
        let mut seen: [Vec<bool>; 2] = [Vec::new(), Vec::new()];
        for round in 0..4 {
            let mut this_round = order.to_vec();
            if round % 2 == 1 {
                this_round.reverse();
            }
            for t in this_round {
                let resp = first_answer(&s, &ModelRequest::new("sys", tasks[t])).await;
                seen[t].push(resp.text() == "heads");
            }
        }
        for (t, outcomes) in seen.iter().enumerate() {
            let expected: Vec<bool> = (0..outcomes.len() as u64)
                .map(|k| coin_uniform(1006, tasks[t], "sys", 0, k) < p)
                .collect();
            assert_eq!(outcomes, &expected, "{}", tasks[t]);
        }
        // The sequences depend on the task (and the seed): not one shared stream.
        assert_ne!(seen[0], seen[1]);
        let other_seed: Vec<bool> = (0..seen[0].len() as u64)
            .map(|k| coin_uniform(1007, tasks[0], "sys", 0, k) < p)
            .collect();
        assert_ne!(seen[0], other_seed);
        // And the function is pinned: a change would change every seeded test above this crate.
        let pinned: Vec<String> = (0..3)
            .map(|k| format!("{:.6}", coin_uniform(7, "task", "sys", 0, k)))
            .collect();
        assert_eq!(pinned, ["0.211124", "0.598588", "0.939899"]);
    }

    #[tokio::test]
    async fn tails_answers_with_the_tails_turn_and_the_script_then_moves_on() {
        let s = script(&EXAMPLE.replace("seed = 7", "seed = 1008"));
        let call = |resp: &ModelResponse| resp.tool_calls().next().unwrap().arguments.clone();

        let model = ScriptedModel::new(s.clone(), "example");
        let resp = model
            .complete(&ModelRequest::new("sys", "pass-probability=0"))
            .await
            .unwrap();
        assert_eq!(coin_note(&resp), Some("coin: tails (p=0.00)"));
        assert_eq!(call(&resp), json!({"command": "echo no > /app/out.txt"}));
        assert_eq!(resp.stop_reason, StopReason::ToolUse);
        assert_eq!(resp.tool_calls().next().unwrap().id, "call_1_0");
        let done = model
            .complete(&ModelRequest::new("sys", "pass-probability=0"))
            .await
            .unwrap();
        assert_eq!((done.text().as_str(), coin_note(&done)), ("Done.", None));
        model.finish().unwrap();

        let model = ScriptedModel::new(s, "example");
        let resp = model
            .complete(&ModelRequest::new("boost=0.5", "pass-probability=0.5"))
            .await
            .unwrap();
        assert_eq!(coin_note(&resp), Some("coin: heads (p=1.00)"));
        assert_eq!(call(&resp), json!({"command": "echo ok > /app/out.txt"}));
        let done = model
            .complete(&ModelRequest::new("boost=0.5", "pass-probability=0.5"))
            .await
            .unwrap();
        assert_eq!(done.text(), "Done.");
        model.finish().unwrap();

        // The coin turn's expectations hold whatever the coin shows; the tails turn's own are
        // checked when it answers, and its failure carries the outcome.
        let s = script(
            "[[turns]]\ntext = \"heads\"\nexpect = { system_contains = \"agent\" }\n\
             coin = { seed = 1009, p = 0.0, tails = { fail = \"infrastructure\" } }\n\n\
             [[turns]]\ntext = \"heads\"\n\
             coin = { seed = 1009, p = 0.0, tails = { expect = { messages_len = 3 } } }\n",
        );
        let model = ScriptedModel::new(s.clone(), "expect");
        let err = model
            .complete(&ModelRequest::new("poet", "u"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Script);
        let err = ScriptedModel::new(s.clone(), "expect")
            .complete(&ModelRequest::new("an agent", "u"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Infrastructure);
        assert!(err.to_string().contains("coin: tails (p=0.00)"), "{err}");
        let model = ScriptedModel::new(s, "expect");
        let _ = model.complete(&ModelRequest::new("an agent", "u")).await;
        let err = model
            .complete(&ModelRequest::new("an agent", "u"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("turn 2") && text.contains("(tails) expected 3 messages"),
            "{text}"
        );
    }
}
