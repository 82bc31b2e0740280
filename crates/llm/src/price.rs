//! Prices per million tokens and the cost of a call.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::types::Usage;

/// USD per million tokens.
///
/// `cache_read` and `cache_write` default to the `input` price when absent, so a user-written
/// price for a local or unfamiliar model never undercounts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// A misspelt key (`inptu`) would otherwise leave the price at its default silently.
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

impl Price {
    pub const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Self {
        Self {
            input,
            output,
            cache_read: Some(cache_read),
            cache_write: Some(cache_write),
        }
    }

    /// The cost of one call in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per_token = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1_000_000.0;
        per_token(usage.input_tokens, self.input)
            + per_token(usage.output_tokens, self.output)
            + per_token(
                usage.cache_read_tokens,
                self.cache_read.unwrap_or(self.input),
            )
            + per_token(
                usage.cache_write_tokens,
                self.cache_write.unwrap_or(self.input),
            )
    }
}

/// Anthropic: cache writes (5-minute TTL) cost 1.25× input and cache reads 0.1× input.
const fn anthropic(input: f64, output: f64) -> Price {
    Price::new(input, output, input * 0.1, input * 1.25)
}

/// OpenAI: caching is automatic and writes are free; `cached_input` is the discounted read price.
const fn openai(input: f64, output: f64, cached_input: f64) -> Price {
    Price::new(input, output, cached_input, input)
}

/// The prices that ship with autoagent (USD per million tokens, list prices of late 2025).
///
/// Keys are model ids without dates; [`PriceTable::lookup`] strips `-20250929`, `-2025-08-07`
/// and `-latest` suffixes. Long-context surcharges (Sonnet above 200k input tokens) and 1-hour
/// cache writes are not modelled.
pub const SHIPPED_PRICES: &[(&str, Price)] = &[
    // Anthropic
    ("claude-opus-4-5", anthropic(5.0, 25.0)),
    ("claude-opus-4-1", anthropic(15.0, 75.0)),
    ("claude-opus-4", anthropic(15.0, 75.0)),
    ("claude-opus-4-0", anthropic(15.0, 75.0)),
    ("claude-sonnet-4-5", anthropic(3.0, 15.0)),
    ("claude-sonnet-4", anthropic(3.0, 15.0)),
    ("claude-sonnet-4-0", anthropic(3.0, 15.0)),
    ("claude-3-7-sonnet", anthropic(3.0, 15.0)),
    ("claude-3-5-sonnet", anthropic(3.0, 15.0)),
    ("claude-haiku-4-5", anthropic(1.0, 5.0)),
    ("claude-3-5-haiku", anthropic(0.8, 4.0)),
    ("claude-3-haiku", anthropic(0.25, 1.25)),
    ("claude-3-opus", anthropic(15.0, 75.0)),
    // OpenAI
    ("gpt-5", openai(1.25, 10.0, 0.125)),
    ("gpt-5.1", openai(1.25, 10.0, 0.125)),
    ("gpt-5-codex", openai(1.25, 10.0, 0.125)),
    ("gpt-5.1-codex", openai(1.25, 10.0, 0.125)),
    ("gpt-5-mini", openai(0.25, 2.0, 0.025)),
    ("gpt-5-nano", openai(0.05, 0.4, 0.005)),
    ("gpt-4.1", openai(2.0, 8.0, 0.5)),
    ("gpt-4.1-mini", openai(0.4, 1.6, 0.1)),
    ("gpt-4.1-nano", openai(0.1, 0.4, 0.025)),
    ("gpt-4o", openai(2.5, 10.0, 1.25)),
    ("gpt-4o-mini", openai(0.15, 0.6, 0.075)),
    ("o3", openai(2.0, 8.0, 0.5)),
    ("o3-mini", openai(1.1, 4.4, 0.55)),
    ("o4-mini", openai(1.1, 4.4, 0.275)),
    ("o1", openai(15.0, 60.0, 7.5)),
];

/// Prices by model id: the user's entries first, then (for the hosted providers) the shipped ones.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    user: HashMap<String, Price>,
    use_shipped: bool,
}

impl PriceTable {
    /// The shipped table plus the user's entries, which win. User keys may be `model` or
    /// `provider/model` (`"openai-compatible/qwen3-coder"`).
    pub fn new(user: HashMap<String, Price>) -> Self {
        Self {
            user,
            use_shipped: true,
        }
    }

    /// Only the user's entries: for OpenAI-compatible servers, whose model names say nothing
    /// about what a call costs.
    pub fn user_only(user: HashMap<String, Price>) -> Self {
        Self {
            user,
            use_shipped: false,
        }
    }

    /// The price of `model` served by `provider`, or `None` when it is unknown.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Price> {
        let base = strip_version_suffix(model);
        for candidate in [model, base] {
            let qualified = format!("{provider}/{candidate}");
            if let Some(price) = self
                .user
                .get(&qualified)
                .or_else(|| self.user.get(candidate))
            {
                return Some(*price);
            }
        }
        if !self.use_shipped {
            return None;
        }
        SHIPPED_PRICES
            .iter()
            .find(|(id, _)| *id == model || *id == base)
            .map(|(_, price)| *price)
    }

    /// The cost of a call; `None` when no price is known for either model id (the one asked for
    /// and the one the provider reports).
    pub fn cost(&self, provider: &str, models: &[&str], usage: &Usage) -> Option<f64> {
        models
            .iter()
            .find_map(|model| self.lookup(provider, model))
            .map(|price| price.cost(usage))
    }
}

/// `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`; `gpt-4.1-2025-04-14` → `gpt-4.1`;
/// `claude-3-7-sonnet-latest` → `claude-3-7-sonnet`.
fn strip_version_suffix(model: &str) -> &str {
    if let Some(stripped) = model.strip_suffix("-latest") {
        return stripped;
    }
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // -YYYYMMDD
    if let Some((head, tail)) = model.rsplit_once('-')
        && tail.len() == 8
        && is_digits(tail)
    {
        return head;
    }
    // -YYYY-MM-DD
    let parts: Vec<&str> = model.rsplitn(4, '-').collect();
    if let [day, month, year, head] = parts.as_slice()
        && year.len() == 4
        && month.len() == 2
        && day.len() == 2
        && is_digits(year)
        && is_digits(month)
        && is_digits(day)
    {
        return head;
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_ids_match_their_base_model() {
        assert_eq!(
            strip_version_suffix("claude-sonnet-4-5-20250929"),
            "claude-sonnet-4-5"
        );
        assert_eq!(strip_version_suffix("gpt-4.1-2025-04-14"), "gpt-4.1");
        assert_eq!(
            strip_version_suffix("claude-3-7-sonnet-latest"),
            "claude-3-7-sonnet"
        );
        assert_eq!(strip_version_suffix("gpt-5"), "gpt-5");
        assert_eq!(strip_version_suffix("claude-opus-4-1"), "claude-opus-4-1");
        let table = PriceTable::new(HashMap::new());
        assert!(
            table
                .lookup("anthropic", "claude-sonnet-4-5-20250929")
                .is_some()
        );
        assert!(table.lookup("openai", "gpt-5-2025-08-07").is_some());
        // A longer name is a different model, not a prefix match: gpt-5-pro costs far more.
        assert!(table.lookup("openai", "gpt-5-pro").is_none());
    }

    #[test]
    fn anthropic_cost_counts_cache_reads_and_writes() {
        let table = PriceTable::new(HashMap::new());
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
            reasoning_tokens: 0,
        };
        let cost = table
            .cost("anthropic", &["claude-sonnet-4-5"], &usage)
            .unwrap();
        // 3 + 15 + 0.3 + 3.75
        assert!((cost - 22.05).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn unknown_models_have_no_cost_and_users_can_add_prices() {
        let usage = Usage {
            input_tokens: 10,
            ..Usage::default()
        };
        let shipped = PriceTable::user_only(HashMap::new());
        assert_eq!(
            shipped.cost("openai-compatible", &["gpt-4.1"], &usage),
            None
        );

        let user = HashMap::from([(
            "openai-compatible/qwen3-coder".to_owned(),
            Price {
                input: 1.0,
                output: 2.0,
                cache_read: None,
                cache_write: None,
            },
        )]);
        let table = PriceTable::user_only(user);
        let cost = table
            .cost("openai-compatible", &["qwen3-coder"], &usage)
            .unwrap();
        assert!((cost - 0.00001).abs() < 1e-12);
        assert_eq!(table.cost("openai-compatible", &["other"], &usage), None);
    }

    #[test]
    fn user_prices_override_shipped_ones() {
        let user = HashMap::from([("gpt-5".to_owned(), Price::new(1.0, 1.0, 1.0, 1.0))]);
        let table = PriceTable::new(user);
        assert_eq!(table.lookup("openai", "gpt-5").map(|p| p.input), Some(1.0));
    }
}
