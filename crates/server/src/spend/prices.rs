//! What tokens cost: a per-model price table (USD per million tokens), with cache writes
//! and reads priced as the Claude API prices them (1.25x input for 5-minute writes, 2x for
//! 1-hour writes, 0.1x for reads) and batch usage at half price.

use std::collections::HashMap;

use missive_store::TokenCounts;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
    /// USD per 1,000 web searches (`web_search`); fetches cost only their tokens.
    pub web_search: f64,
    /// USD per hour of code execution.
    pub code_execution: f64,
}

impl Price {
    /// A price from its input and output rates, with the Claude API's cache multipliers.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write_5m: input * 1.25,
            cache_write_1h: input * 2.0,
            cache_read: input * 0.1,
            web_search: 0.0,
            code_execution: 0.0,
        }
    }

    pub const FREE: Price = Price {
        input: 0.0,
        output: 0.0,
        cache_write_5m: 0.0,
        cache_write_1h: 0.0,
        cache_read: 0.0,
        web_search: 0.0,
        code_execution: 0.0,
    };
}

/// The cost report's line for web searches, beside the token types.
pub const WEB_SEARCH: &str = "web_search_requests";
/// The cost report's line for code execution time.
pub const CODE_EXECUTION: &str = "code_execution_ms";

/// The cost report's token types, in its own names, with what each costs per million (a
/// search's price per 1,000 and an hour of code execution scaled to match).
pub fn line_items(price: &Price, tokens: &TokenCounts) -> [(&'static str, u64, f64); 7] {
    [
        ("uncached_input_tokens", tokens.uncached_input, price.input),
        ("output_tokens", tokens.output, price.output),
        (
            "cache_read_input_tokens",
            tokens.cache_read,
            price.cache_read,
        ),
        (
            "cache_creation.ephemeral_5m_input_tokens",
            tokens.cache_creation_5m,
            price.cache_write_5m,
        ),
        (
            "cache_creation.ephemeral_1h_input_tokens",
            tokens.cache_creation_1h,
            price.cache_write_1h,
        ),
        (
            WEB_SEARCH,
            tokens.web_search_requests,
            price.web_search * 1000.0,
        ),
        // Milliseconds: an hour is 3.6 million of them.
        (
            CODE_EXECUTION,
            tokens.code_execution_ms,
            price.code_execution / 3.6,
        ),
    ]
}

#[derive(Debug, Clone, Default)]
pub struct Prices {
    /// For models without their own entry; free when unset (local compute has no list price).
    pub default: Option<Price>,
    pub models: HashMap<String, Price>,
}

impl Prices {
    pub fn price(&self, model: &str) -> Price {
        self.models
            .get(model)
            .copied()
            .or(self.default)
            .unwrap_or(Price::FREE)
    }

    /// Cents, unrounded.
    pub fn cost_cents(&self, model: &str, service_tier: &str, tokens: &TokenCounts) -> f64 {
        let price = self.price(model);
        let usd: f64 = line_items(&price, tokens)
            .iter()
            .map(|(_, n, per_mtok)| *n as f64 * per_mtok / 1e6)
            .sum();
        usd * 100.0 * tier_factor(service_tier)
    }
}

/// Batch usage costs half.
pub fn tier_factor(service_tier: &str) -> f64 {
    if service_tier == "batch" {
        0.5
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spend::tests::tokens;

    #[test]
    fn web_searches_are_priced_per_thousand() {
        let prices = Prices {
            default: Some(Price {
                web_search: 10.0,
                ..Price::new(3.0, 15.0)
            }),
            models: HashMap::new(),
        };
        let searches = TokenCounts {
            web_search_requests: 3,
            web_fetch_requests: 5,
            ..TokenCounts::default()
        };
        // $10 per 1,000 searches: 3 cost 3 cents; fetches cost only their tokens.
        let cents = prices.cost_cents("m", "standard", &searches);
        assert!((cents - 3.0).abs() < 1e-9, "{cents}");
        let prices = Prices {
            default: Some(Price {
                code_execution: 0.05,
                ..Price::new(3.0, 15.0)
            }),
            models: HashMap::new(),
        };
        let half_hour = TokenCounts {
            code_execution_ms: 1_800_000,
            ..TokenCounts::default()
        };
        let cents = prices.cost_cents("m", "standard", &half_hour);
        assert!((cents - 2.5).abs() < 1e-9, "{cents}");
    }

    #[test]
    fn cache_writes_reads_and_batches_are_priced_as_the_claude_api_prices_them() {
        let prices = Prices {
            default: Some(Price::new(3.0, 15.0)),
            models: HashMap::new(),
        };
        // 1M of each: 3 + 15 + 3.75 + 6 + 0.3 USD = 28.05 USD.
        let all = tokens(1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000);
        let cents = prices.cost_cents("m", "standard", &all);
        assert!((cents - 2805.0).abs() < 1e-6, "{cents}");
        let batch = prices.cost_cents("m", "batch", &all);
        assert!((batch - 1402.5).abs() < 1e-6, "{batch}");
    }
}
