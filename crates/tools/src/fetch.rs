//! One GET of a URL a model named, safe to run from inside the operator's network. Each
//! hop is checked by [`crate::public_url`] (scheme, literal address, the workspace's
//! allowlist), its name resolved once and every answer vetted, and the connection pinned to
//! the vetted address, so a name whose answer changes between check and connect (DNS
//! rebinding) still cannot reach inside. Redirects are followed by hand, each target
//! checked the same way. The body is read up to a byte cap.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use url::Url;

use crate::public_url::{self, Refused, Rules};

/// Redirects one fetch follows.
const MAX_REDIRECTS: usize = 5;

/// How fetches are bounded.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Hosts or addresses allowed although they are private (operators' and tests' own
    /// servers).
    pub private_hosts: Vec<String>,
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// What a fetch brought back.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL after redirects.
    pub url: Url,
    /// The media type, without parameters, lowercased.
    pub media_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL (or a redirect's target) is not one this server may fetch.
    #[error("{0}")]
    NotAllowed(String),
    /// Unreachable, an error status, too many redirects, or too slow.
    #[error("{0}")]
    NotAccessible(String),
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
}

impl From<Refused> for FetchError {
    fn from(refused: Refused) -> Self {
        FetchError::NotAllowed(refused.to_string())
    }
}

impl Fetcher {
    /// GETs `raw`, following redirects. `permit` is asked about every URL on the way (the
    /// tool's domain filters), after the address rules.
    pub async fn get(
        &self,
        raw: &str,
        allowlist: Option<&[String]>,
        permit: impl Fn(&Url) -> Result<(), String>,
    ) -> Result<Fetched, FetchError> {
        let rules = Rules {
            allowlist,
            private_hosts: &self.private_hosts,
        };
        let mut current = raw.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let (url, pinned) = public_url::resolve(&current, rules).await?;
            permit(&url).map_err(FetchError::NotAllowed)?;
            // No proxy: a proxy would look the name up again, past the check.
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(self.timeout)
                .user_agent(concat!("Missive-WebFetch/", env!("CARGO_PKG_VERSION")));
            if let (Some(address), Some(domain)) = (pinned, url.domain()) {
                builder = builder.resolve(domain, address);
            }
            let client = builder
                .build()
                .map_err(|e| FetchError::NotAccessible(e.to_string()))?;
            let response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| FetchError::NotAccessible(describe(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        FetchError::NotAccessible(format!("{status} without a Location"))
                    })?;
                current = url
                    .join(location)
                    .map_err(|e| FetchError::NotAccessible(format!("bad redirect: {e}")))?
                    .to_string();
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::NotAccessible(format!(
                    "the server answered {status}"
                )));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > self.max_bytes) {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            let media_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let mut body = Vec::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| FetchError::NotAccessible(describe(&e)))?;
                if body.len() + chunk.len() > self.max_bytes {
                    return Err(FetchError::TooLarge(self.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url,
                media_type,
                body,
            });
        }
        Err(FetchError::NotAccessible(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "the server did not answer in time".to_owned()
    } else if err.is_connect() {
        "the server could not be reached".to_owned()
    } else {
        "the response could not be read".to_owned()
    }
}
