//! One rate governor per provider endpoint and key, shared by every model in the process.
//!
//! Every trial and the meta-agent build their own [`Model`](crate::Model), but a rate limit
//! belongs to the account: 32 trials that each back off on their own keep hitting the limit
//! in turn. The governor makes them one pool:
//!
//! * a cap on requests in flight;
//! * on 429 or 529 the whole pool pauses (as long as the failed request itself waits: the
//!   server's `retry-after`, else the retry backoff) and the number of requests allowed in
//!   flight halves; it grows back by one after
//!   each run of successes as long as the current limit (additive increase, multiplicative
//!   decrease);
//! * rate-limit headers that announce an exhausted budget (`anthropic-ratelimit-*-remaining: 0`
//!   with its `-reset` time, `x-ratelimit-remaining-*: 0` with `x-ratelimit-reset-*`) pause the
//!   pool until the reset, before any 429.
//!
//! [`throttled`] tells whether any pool is being slowed right now, for status lines.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::model::ProviderKind;
use crate::secret::ApiKey;
use crate::transport::HeaderMap;

/// Requests in flight per provider and key when no model config sets a cap.
pub const DEFAULT_MAX_CONCURRENT: u32 = 32;

const ANTHROPIC_LIMITS: [&str; 4] = ["requests", "tokens", "input-tokens", "output-tokens"];
const OPENAI_LIMITS: [&str; 2] = ["requests", "tokens"];

/// The shared pacing of one provider endpoint and key.
pub struct Governor {
    label: String,
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug)]
struct State {
    /// The configured cap on requests in flight.
    cap: u32,
    /// The current adaptive limit, between 1 and `cap`.
    limit: u32,
    in_flight: u32,
    paused_until: Option<Instant>,
    successes: u32,
    throttles: u64,
}

impl fmt::Debug for Governor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Governor")
            .field("label", &self.label)
            .field("state", &*self.lock())
            .finish()
    }
}

/// What a governor is doing, for status lines and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernorStatus {
    /// `provider base_url` (never the key).
    pub label: String,
    pub cap: u32,
    pub limit: u32,
    pub in_flight: u32,
    /// How long the pool is still paused for.
    pub paused_for: Option<Duration>,
    /// 429/529 answers seen since the process started.
    pub throttles: u64,
}

impl GovernorStatus {
    /// Requests are being held back: the pool is paused or its limit is below the cap.
    pub fn throttled(&self) -> bool {
        self.paused_for.is_some() || self.limit < self.cap
    }
}

/// Held while a request is in flight; dropping it lets the next one go.
#[derive(Debug)]
pub struct Permit {
    governor: Arc<Governor>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.governor.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.governor.released.notify_waiters();
    }
}

impl Governor {
    /// A governor of its own, outside the process-wide registry (tests, benchmarks).
    pub fn new(label: impl Into<String>, cap: u32) -> Arc<Self> {
        let cap = cap.max(1);
        Arc::new(Self {
            label: label.into(),
            state: Mutex::new(State {
                cap,
                limit: cap,
                in_flight: 0,
                paused_until: None,
                successes: 0,
                throttles: 0,
            }),
            released: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic elsewhere: every update is one assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a place in the pool (after any pause) and takes it.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let pause = {
                let mut state = self.lock();
                let now = Instant::now();
                match state.paused_until {
                    Some(until) if until > now => Some(until),
                    _ if state.in_flight < state.limit => {
                        state.in_flight += 1;
                        return Permit {
                            governor: Arc::clone(self),
                        };
                    }
                    _ => None,
                }
            };
            match pause {
                Some(until) => tokio::time::sleep_until(until.into()).await,
                None => released.await,
            }
        }
    }

    /// A request got its answer; the limit grows back after a run of successes.
    pub fn on_success(&self) {
        let mut state = self.lock();
        if state.limit < state.cap {
            state.successes += 1;
            if state.successes >= state.limit {
                state.limit += 1;
                state.successes = 0;
            }
        }
    }

    /// A 429 or 529: pause the whole pool for `pause` (the wait of the request that got it) and
    /// halve the limit (once per pause: the other requests of the same burst report the same
    /// overload).
    pub fn on_throttled(&self, pause: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        state.throttles += 1;
        state.successes = 0;
        let in_pause = state.paused_until.is_some_and(|until| until > now);
        if !in_pause {
            state.limit = (state.limit / 2).max(1);
        }
        let until = now + pause;
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
        tracing::info!(
            governor = %self.label,
            limit = state.limit,
            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "rate limited: pausing every request to this provider"
        );
    }

    /// Reads the provider's rate-limit headers; an exhausted budget pauses the pool until it
    /// resets, for at most `longest` (the retry policy's `max_retry_after`).
    pub fn observe_headers(&self, headers: &HeaderMap, longest: Duration) {
        let Some(wait) = exhausted_for(headers, SystemTime::now()) else {
            return;
        };
        let wait = wait.min(longest);
        if wait.is_zero() {
            return;
        }
        let until = Instant::now() + wait;
        let mut state = self.lock();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }

    /// Lowers the cap when a model sharing this governor asks for fewer requests in flight.
    pub fn limit_cap(&self, cap: u32) {
        let mut state = self.lock();
        let cap = cap.max(1);
        if cap < state.cap {
            state.cap = cap;
            state.limit = state.limit.min(cap);
        }
    }

    pub fn status(&self) -> GovernorStatus {
        let state = self.lock();
        let now = Instant::now();
        GovernorStatus {
            label: self.label.clone(),
            cap: state.cap,
            limit: state.limit,
            in_flight: state.in_flight,
            paused_for: state
                .paused_until
                .and_then(|until| until.checked_duration_since(now))
                .filter(|d| !d.is_zero()),
            throttles: state.throttles,
        }
    }
}

fn registry() -> MutexGuard<'static, HashMap<String, Arc<Governor>>> {
    static GOVERNORS: OnceLock<Mutex<HashMap<String, Arc<Governor>>>> = OnceLock::new();
    GOVERNORS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process-wide governor of a provider endpoint and key, created on first use. `cap` (the
/// model config's `max_concurrent_requests`) can only lower the cap of an existing governor.
pub fn shared(
    provider: ProviderKind,
    base_url: &str,
    key: Option<&ApiKey>,
    cap: Option<u32>,
) -> Arc<Governor> {
    let label = format!("{provider} {}", base_url.trim_end_matches('/'));
    // The key only tells pools apart; a hash keeps it out of the registry.
    let fingerprint = key.map(|key| {
        let mut hasher = DefaultHasher::new();
        key.expose().hash(&mut hasher);
        hasher.finish()
    });
    let id = format!("{label} {fingerprint:?}");
    let governor = Arc::clone(
        registry()
            .entry(id)
            .or_insert_with(|| Governor::new(label, cap.unwrap_or(DEFAULT_MAX_CONCURRENT))),
    );
    if let Some(cap) = cap {
        governor.limit_cap(cap);
    }
    governor
}

/// The status of every governor in the process.
pub fn statuses() -> Vec<GovernorStatus> {
    let governors: Vec<Arc<Governor>> = registry().values().cloned().collect();
    let mut statuses: Vec<GovernorStatus> = governors.iter().map(|g| g.status()).collect();
    statuses.sort_by(|a, b| a.label.cmp(&b.label));
    statuses
}

/// Whether any provider is slowing this process down right now.
pub fn throttled() -> bool {
    statuses().iter().any(GovernorStatus::throttled)
}

/// How long until an exhausted rate-limit budget resets, from Anthropic's or OpenAI's headers.
pub fn exhausted_for(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let exhausted = |name: &str| text(name).and_then(|v| v.parse::<f64>().ok()) == Some(0.0);
    let mut longest: Option<Duration> = None;
    let mut note = |wait: Option<Duration>| {
        if let Some(wait) = wait {
            longest = Some(longest.map_or(wait, |l| l.max(wait)));
        }
    };
    for limit in ANTHROPIC_LIMITS {
        if exhausted(&format!("anthropic-ratelimit-{limit}-remaining")) {
            note(
                text(&format!("anthropic-ratelimit-{limit}-reset"))
                    .and_then(|reset| until_rfc3339(reset, now)),
            );
        }
    }
    for limit in OPENAI_LIMITS {
        if exhausted(&format!("x-ratelimit-remaining-{limit}")) {
            note(text(&format!("x-ratelimit-reset-{limit}")).and_then(parse_duration));
        }
    }
    longest
}

fn until_rfc3339(stamp: &str, now: SystemTime) -> Option<Duration> {
    let at: SystemTime = chrono::DateTime::parse_from_rfc3339(stamp).ok()?.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// OpenAI's reset durations: `6s`, `12ms`, `1m30s`, `2h0m1.5s`, `0.5s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !number.is_empty() {
        // A bare number: seconds.
        total += number.parse::<f64>().ok()?;
        any = true;
    }
    if !any {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn openai_durations() {
        assert_eq!(parse_duration("6s"), Some(Duration::from_secs(6)));
        assert_eq!(parse_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h0m1s"), Some(Duration::from_secs(7201)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn exhausted_budgets_from_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_755_780_060);
        // 2025-08-21T12:41:17Z is 17 s after `now`.
        let anthropic = headers(&[
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-08-21T12:41:17Z",
            ),
            ("anthropic-ratelimit-requests-remaining", "12"),
            ("anthropic-ratelimit-requests-reset", "2025-08-21T12:45:00Z"),
        ]);
        assert_eq!(
            exhausted_for(&anthropic, now),
            Some(Duration::from_secs(17))
        );
        let openai = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m2s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "250ms"),
        ]);
        assert_eq!(exhausted_for(&openai, now), Some(Duration::from_secs(62)));
        let fine = headers(&[
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
        ]);
        assert_eq!(exhausted_for(&fine, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_the_pool_and_halves_the_limit() {
        let governor = Governor::new("test", 8);
        let held: Vec<Permit> = futures_join(&governor, 8).await;
        assert_eq!(governor.status().in_flight, 8);
        governor.on_throttled(Duration::from_secs(2));
        let status = governor.status();
        assert_eq!(status.limit, 4);
        assert!(status.throttled());
        // A second 429 of the same burst does not halve again.
        governor.on_throttled(Duration::from_secs(1));
        assert_eq!(governor.status().limit, 4);
        drop(held);

        // Nobody starts during the pause.
        let started = tokio::time::Instant::now();
        let permit = governor.acquire().await;
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(permit);

        // Only `limit` requests in flight now; it grows back with successes.
        let four = futures_join(&governor, 4).await;
        let fifth = tokio::time::timeout(Duration::from_secs(5), governor.acquire()).await;
        assert!(fifth.is_err(), "a fifth request went past a limit of 4");
        drop(four);
        for _ in 0..4 {
            governor.on_success();
        }
        assert_eq!(governor.status().limit, 5);
        for _ in 0..100 {
            governor.on_success();
        }
        let status = governor.status();
        assert_eq!(status.limit, 8);
        assert!(!status.throttled());
        assert_eq!(status.throttles, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_headers_pause_without_a_429() {
        let governor = Governor::new("test", 2);
        governor.observe_headers(
            &headers(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "3s"),
            ]),
            Duration::from_secs(600),
        );
        assert!(governor.status().throttled());
        let started = tokio::time::Instant::now();
        let _permit = governor.acquire().await;
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert_eq!(governor.status().limit, 2);
    }

    #[test]
    fn shared_governors_are_per_endpoint_and_key() {
        let a = ApiKey::new("sk-one");
        let b = ApiKey::new("sk-two");
        let url = "http://127.0.0.1:1/governor-test";
        let first = shared(ProviderKind::OpenAi, url, Some(&a), None);
        let again = shared(ProviderKind::OpenAi, url, Some(&a), Some(4));
        let other_key = shared(ProviderKind::OpenAi, url, Some(&b), None);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other_key));
        assert_eq!(first.status().cap, 4);
        assert!(!format!("{first:?}").contains("sk-one"));
    }

    async fn futures_join(governor: &Arc<Governor>, n: usize) -> Vec<Permit> {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(governor.acquire().await);
        }
        permits
    }
}
