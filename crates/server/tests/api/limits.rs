//! Rate limits through HTTP: the `anthropic-ratelimit-*` headers and the 429.

use std::collections::HashMap;

use missive_server::limits::{Limits, RateLimiter};
use serde_json::json;

use super::common::{assert_error, hello, user, TestServer};

fn limited(requests_per_minute: u32) -> RateLimiter {
    let limits = Limits {
        requests_per_minute,
        input_tokens_per_minute: 10_000,
        output_tokens_per_minute: 5_000,
    };
    RateLimiter::new(limits, HashMap::new())
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn every_message_carries_rate_limit_headers_that_count_down() {
    let server = TestServer::start_with(hello(), |s| s.with_rate_limits(limited(10))).await;
    let body = json!({"model": "scripted-1", "max_tokens": 50, "messages": user("hi")});
    let first = server.messages(body.clone()).await;
    assert_eq!(first.status(), 200);
    for prefix in ["requests", "tokens", "input-tokens", "output-tokens"] {
        for suffix in ["limit", "remaining", "reset"] {
            let name = format!("anthropic-ratelimit-{prefix}-{suffix}");
            assert!(
                first.headers().contains_key(name.as_str()),
                "{name} missing"
            );
        }
    }
    assert_eq!(header(&first, "anthropic-ratelimit-requests-limit"), 10);
    assert_eq!(header(&first, "anthropic-ratelimit-requests-remaining"), 9);
    let reset = first.headers()["anthropic-ratelimit-requests-reset"]
        .to_str()
        .unwrap();
    assert!(humantime::parse_rfc3339(reset).is_ok(), "{reset}");
    // The reply used 4 output tokens: the rest reserved for max_tokens came back before the
    // headers were written (the bucket refills ~83 tokens/s, so allow a little drift).
    let out_first = header(&first, "anthropic-ratelimit-output-tokens-remaining");
    assert!((4_996..=4_998).contains(&out_first), "{out_first}");
    let second = server.messages(body).await;
    assert_eq!(header(&second, "anthropic-ratelimit-requests-remaining"), 8);
    let out_second = header(&second, "anthropic-ratelimit-output-tokens-remaining");
    assert!(
        out_second < out_first && out_second >= 4_992,
        "{out_second}"
    );
}

#[tokio::test]
async fn past_the_limit_a_429_names_it_and_says_when_to_retry() {
    let server = TestServer::start_with(hello(), |s| s.with_rate_limits(limited(1))).await;
    let body = json!({"model": "scripted-1", "max_tokens": 5, "messages": user("hi")});
    assert_eq!(server.messages(body.clone()).await.status(), 200);
    let refused = server.messages(body).await;
    assert_eq!(refused.headers()["retry-after"], "60");
    let message = assert_error(refused, 429, "rate_limit_error").await;
    assert!(message.contains("1 requests per minute"), "{message}");
}
