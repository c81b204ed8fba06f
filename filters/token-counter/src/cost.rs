//! Cost of a response from a per-model price table, in micro-dollars.
//!
//! Prices are given as USD per million tokens (the unit providers publish).
//! One USD per million tokens is exactly one micro-dollar per token, so the
//! cost in micro-dollars is `tokens × price`, rounded to the nearest integer
//! once per request.

use crate::tokenize::ModelTable;
use crate::usage::Usage;

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's cache (default: `input`).
    pub cached_input: f64,
    /// Prompt tokens written to the cache (Anthropic; default: `input`).
    pub cache_write: f64,
}

impl Price {
    /// Micro-dollars for `usage`. Cached and cache-write tokens are part of
    /// `usage.input` and are priced at their own rates instead of `input`.
    ///
    /// The token counts come from the provider and may be anything up to
    /// `u64::MAX`: the sum is taken in `f64` and a cost past `u64::MAX`
    /// saturates there rather than wrapping or reading as free.
    pub fn micro_usd(&self, usage: &Usage) -> u64 {
        let cached = usage.cached.min(usage.input);
        let creation = usage.cache_creation.min(usage.input.saturating_sub(cached));
        let plain = usage.input.saturating_sub(cached).saturating_sub(creation);
        let total = plain as f64 * self.input
            + cached as f64 * self.cached_input
            + creation as f64 * self.cache_write
            + usage.output as f64 * self.output;
        if total.is_nan() || total <= 0.0 {
            0
        } else {
            // `as` saturates: +inf and anything past u64::MAX become u64::MAX.
            total.round() as u64
        }
    }
}

/// Model → price. A model without a price costs nothing (and is counted in a
/// metric so that the gap shows).
pub type PriceTable = ModelTable<Price>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::ModelPattern;

    #[test]
    fn micro_dollars() {
        let price = Price { input: 2.5, output: 10.0, cached_input: 1.25, cache_write: 2.5 };
        // 1000 input (400 cached) + 200 output: 600×2.5 + 400×1.25 + 200×10 = 1500 + 500 + 2000.
        let usage = Usage { input: 1000, output: 200, cached: 400, cache_creation: 0, reasoning: 0 };
        assert_eq!(price.micro_usd(&usage), 4000);
        // A million output tokens at $10 per million is $10 = 10 000 000 µ$.
        assert_eq!(price.micro_usd(&Usage { output: 1_000_000, ..Usage::default() }), 10_000_000);
        // Inconsistent numbers from a provider never underflow.
        assert_eq!(price.micro_usd(&Usage { input: 1, cached: 5, cache_creation: 5, output: 0, reasoning: 0 }), 1);
    }

    #[test]
    fn huge_usage_saturates_instead_of_wrapping_or_costing_nothing() {
        let price = Price { input: 1_000_000.0, output: 1_000_000.0, cached_input: 0.5, cache_write: 2.0 };
        let huge =
            Usage { input: u64::MAX, output: u64::MAX, cached: u64::MAX, cache_creation: u64::MAX, reasoning: 0 };
        assert_eq!(price.micro_usd(&huge), u64::MAX);
        let max_price = Price { input: f64::MAX, output: f64::MAX, cached_input: f64::MAX, cache_write: f64::MAX };
        // The sum overflows f64 to infinity: that is the most expensive, not free.
        assert_eq!(max_price.micro_usd(&Usage { input: 10, output: 10, ..Usage::default() }), u64::MAX);
    }

    #[test]
    fn table_lookup_prefers_the_most_specific() {
        let table = PriceTable::new(vec![
            (
                ModelPattern::parse("gpt-4o*").unwrap(),
                Price { input: 2.5, output: 10.0, cached_input: 1.25, cache_write: 2.5 },
            ),
            (
                ModelPattern::parse("gpt-4o-mini*").unwrap(),
                Price { input: 0.15, output: 0.6, cached_input: 0.075, cache_write: 0.15 },
            ),
        ]);
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").map(|p| p.input), Some(0.15));
        assert_eq!(table.lookup("gpt-4o-2024-08-06").map(|p| p.input), Some(2.5));
        assert!(table.lookup("claude").is_none());
    }
}
