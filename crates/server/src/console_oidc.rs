//! Console sign-in with OpenID Connect: the authorization code flow with PKCE, against the
//! issuer in `[console.oidc]`. The ID token is checked (signature against the issuer's
//! keys, issuer, audience, expiry, nonce) and its `email` names an organization user; the
//! user's organization role says what the console lets them do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// `[console.oidc]`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer's URL, as in its ID tokens' `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where the issuer sends the browser back: `…/console/oidc/callback` on this server.
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("the identity provider answered {0}")]
    Refused(String),
    #[error("the ID token is not valid: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("the ID token is not valid: {0}")]
    Claims(&'static str),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    nonce: Option<String>,
}

/// How long the issuer's configuration and keys are trusted before they are read again.
const REFRESH: Duration = Duration::from_secs(300);

/// One sign-in in flight: what the browser must bring back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl Attempt {
    pub fn new() -> Self {
        let random = || format!("{}{}", crate::ids::new_id(""), crate::ids::new_id(""));
        Self {
            state: random(),
            nonce: random(),
            verifier: random(),
        }
    }

    /// The PKCE challenge (S256) for this attempt's verifier.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, Discovery, JwkSet)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            config,
            http,
            cached: Mutex::new(None),
        })
    }

    async fn provider(&self, refresh: bool) -> Result<(Discovery, JwkSet), OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, discovery, keys)) = cached.as_ref() {
            if !refresh && at.elapsed() < REFRESH {
                return Ok((discovery.clone(), keys.clone()));
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        let keys: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        *cached = Some((Instant::now(), discovery.clone(), keys.clone()));
        Ok((discovery, keys))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self.http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(OidcError::Refused(format!(
                "{} for {url}",
                response.status()
            )));
        }
        Ok(response.json().await?)
    }

    /// Where to send the browser to sign in.
    pub async fn authorize_url(&self, attempt: &Attempt) -> Result<String, OidcError> {
        let (discovery, _) = self.provider(false).await?;
        let mut url = url::Url::parse(&discovery.authorization_endpoint).map_err(|_| {
            OidcError::Refused("an authorization endpoint that is not a URL".into())
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &attempt.state)
            .append_pair("nonce", &attempt.nonce)
            .append_pair("code_challenge", &attempt.challenge())
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Trades the code for an ID token, checks it, and returns the signed-in email.
    pub async fn finish(&self, attempt: &Attempt, code: &str) -> Result<String, OidcError> {
        let (discovery, _) = self.provider(false).await?;
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.config.redirect_url),
                ("client_id", &self.config.client_id),
                ("client_secret", &self.config.client_secret),
                ("code_verifier", &attempt.verifier),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(OidcError::Refused(format!(
                "{} from the token endpoint",
                response.status()
            )));
        }
        let token: TokenResponse = response.json().await?;
        let claims = self.verify(&token.id_token).await?;
        if claims.nonce.as_deref() != Some(attempt.nonce.as_str()) {
            return Err(OidcError::Claims("its nonce is not this sign-in's"));
        }
        if claims.email_verified == Some(false) {
            return Err(OidcError::Claims("its email is not verified"));
        }
        claims.email.ok_or(OidcError::Claims("it carries no email"))
    }

    async fn verify(&self, id_token: &str) -> Result<Claims, OidcError> {
        let header = decode_header(id_token)?;
        // Keys the issuer publishes only: a token "signed" with a shared secret (HS*) is
        // never accepted, whatever its header says.
        const SIGNED: [Algorithm; 9] = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !SIGNED.contains(&header.alg) {
            return Err(OidcError::Claims("it is not signed with the issuer's keys"));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let (_, mut keys) = self.provider(false).await?;
        // A key the cache does not know yet: the issuer may have rotated its keys.
        if keys.find(&kid).is_none() {
            keys = self.provider(true).await?.1;
        }
        let jwk = keys.find(&kid).ok_or(OidcError::Claims(
            "it is signed by a key the issuer does not list",
        ))?;
        let key = DecodingKey::from_jwk(jwk)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(decode::<Claims>(id_token, &key, &validation)?.claims)
    }
}
