//! Admin API query strings. Arrays come as repeated `name[]=` (or `name=`) pairs, which
//! serde's URL decoding cannot express; every refusal names the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = parts
            .uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Params(pairs))
    }
}

impl Params {
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name[]` or `name`.
    pub fn many(&self, name: &str) -> Vec<String> {
        let bracketed = format!("{name}[]");
        self.0
            .iter()
            .filter(|(k, _)| *k == bracketed || k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn int(
        &self,
        name: &str,
        min: usize,
        max: usize,
        default: usize,
    ) -> Result<usize, ApiError> {
        match self.one(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name}: must be an integer from {min} to {max} (got `{raw}`)"
                    ))
                }),
        }
    }

    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.one(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(raw) => Err(ApiError::invalid(format!(
                "{name}: must be true or false (got `{raw}`)"
            ))),
        }
    }

    pub fn time(&self, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
        self.one(name).map(|raw| parse_time(name, raw)).transpose()
    }
}

pub fn parse_time(name: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::invalid(format!(
            "{name}: must be an RFC 3339 timestamp such as 2025-08-01T00:00:00Z (got `{raw}`)"
        ))
    })
}

/// RFC 3339 in UTC, as the Claude API writes timestamps.
pub fn rfc3339_secs(unix_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn rfc3339_ms(unix_ms: i64) -> String {
    rfc3339_secs(unix_ms.div_euclid(1000))
}
