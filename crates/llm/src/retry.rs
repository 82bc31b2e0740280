//! Retries with exponential backoff and jitter, honouring the provider's `retry-after`.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::error::{LlmError, is_quota_code};
use crate::transport::HeaderMap;
use crate::types::duration_secs;

const RETRY_AFTER_MS: &str = "retry-after-ms";
const RETRY_AFTER: &str = "retry-after";
const X_SHOULD_RETRY: &str = "x-should-retry";

/// When and how often to retry a failed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    #[serde(with = "duration_secs")]
    pub base_delay: Duration,
    /// The longest backoff wait.
    #[serde(with = "duration_secs")]
    pub max_delay: Duration,
    /// The longest wait the provider may ask for with `retry-after`. Real runs honour long
    /// waits; tests set this to milliseconds.
    #[serde(with = "duration_secs")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts over about two minutes of backoff: a run lasts hours, and 429/529 episodes
    /// outlast the SDKs' default of two retries.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff after failed attempt number `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// The wait before the next attempt: the provider's `retry-after` when it sent one (capped by
    /// `max_retry_after`), otherwise the backoff with jitter of ±10% so that many concurrent
    /// trials hit by the same outage do not retry in lockstep.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None => {
                let jitter = rand::rng().random_range(0.9..=1.1);
                self.backoff(attempt).mul_f64(jitter)
            }
        }
    }
}

/// Whether a failed status is worth another attempt. `x-should-retry` (sent by Anthropic and
/// OpenAI) overrides the status; OpenAI's `insufficient_quota` shares 429 with rate limits but
/// never clears by waiting.
pub fn should_retry_status(status: u16, error_type: Option<&str>, headers: &HeaderMap) -> bool {
    match headers.get(X_SHOULD_RETRY).and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    match status {
        429 => !is_quota_code(error_type),
        // 501 Not Implemented and 505 HTTP Version Not Supported will not change on retry.
        408 | 409 | 500 | 502..=504 | 506..=599 => true,
        _ => false,
    }
}

/// The wait the server asks for: `retry-after-ms`, then `retry-after` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text(RETRY_AFTER_MS).and_then(|v| v.parse::<f64>().ok())
        && let Ok(wait) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(wait);
    }
    let value = text(RETRY_AFTER)?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The outcome of one failed attempt.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Worth another attempt, after the server's requested wait if it gave one.
    Retry {
        error: LlmError,
        retry_after: Option<Duration>,
    },
    /// Final: retrying cannot help.
    Fatal(LlmError),
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's attempts are spent.
/// Returns the value and the number of attempts made; the final error records that number too.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    mut attempt: F,
) -> Result<(T, u32), LlmError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut n = 1;
    loop {
        match attempt(n).await {
            Ok(value) => return Ok((value, n)),
            Err(AttemptError::Fatal(error)) => return Err(error.with_attempts(n)),
            Err(AttemptError::Retry { error, .. }) if n >= max_attempts => {
                return Err(error.with_attempts(n));
            }
            Err(AttemptError::Retry { error, retry_after }) => {
                let delay = policy.delay(n, retry_after);
                tracing::warn!(
                    provider,
                    attempt = n,
                    max_attempts,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %error,
                    "model call failed; retrying"
                );
                tokio::time::sleep(delay).await;
                n += 1;
            }
        }
    }
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
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(400));
        assert_eq!(policy.backoff(4), Duration::from_millis(500));
        assert_eq!(policy.backoff(60), Duration::from_millis(500));
        for attempt in 1..5 {
            let d = policy.delay(attempt, None);
            let base = policy.backoff(attempt);
            assert!(d >= base.mul_f64(0.9) && d <= base.mul_f64(1.1), "{d:?}");
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(17))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_755_780_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "17")]), now),
            Some(Duration::from_secs(17))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "17")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retryable_statuses() {
        let none = HeaderMap::new();
        for status in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(should_retry_status(status, None, &none), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422, 501] {
            assert!(!should_retry_status(status, None, &none), "{status}");
        }
        assert!(!should_retry_status(429, Some("insufficient_quota"), &none));
        assert!(!should_retry_status(
            503,
            None,
            &headers(&[("x-should-retry", "false")])
        ));
        assert!(should_retry_status(
            400,
            None,
            &headers(&[("x-should-retry", "true")])
        ));
    }
}
