//! Console sessions: a signed, expiring cookie that stands for the key someone signed in
//! with (or the organization user OIDC signed in). Only the console's own endpoints take
//! it; the APIs take keys. It names the key's id, never its secret, so neither the page
//! nor its scripts ever hold a key; the key (or user) is looked up again on every request,
//! so revoking it ends the session at once. Being signed rather than stored, a session
//! works on every replica.
//!
//! Changes also need the session's CSRF token in `x-missive-csrf`: a token only a page
//! of this origin can read (from `GET /console/api/session`), on top of the cookie's
//! `SameSite=Strict`.

use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use missive_protocol::ErrorType;
use missive_store::KeyKind;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

type HmacSha256 = Hmac<Sha256>;

pub const COOKIE: &str = "missive_console";
/// What an OIDC user's session names instead of a key: `user:ID` (an organization admin)
/// or `user:ID@WORKSPACE` (a member, held to that workspace).
const USER: &str = "user:";

/// The session id for an OIDC user: in `workspace_id` unless an organization admin.
pub fn user_session_id(user_id: &str, workspace_id: Option<&str>) -> String {
    match workspace_id {
        Some(workspace) => format!("{USER}{user_id}@{workspace}"),
        None => format!("{USER}{user_id}"),
    }
}

/// Whether a principal is an OIDC user's (who has no key of their own).
pub fn is_user(principal: &Principal) -> bool {
    principal.key_id.starts_with(USER)
}

/// The organization user behind an OIDC user's principal.
pub fn user_id(principal: &Principal) -> Option<&str> {
    principal.key_id.strip_prefix(USER)
}
pub const CSRF_HEADER: &str = "x-missive-csrf";

/// What a session cookie carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub key_id: String,
    pub kind: KeyKind,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
    nonce: String,
}

/// Issues and checks session cookies under one secret.
pub struct Sessions {
    key: Vec<u8>,
    ttl_ms: i64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(..)")
    }
}

impl Sessions {
    /// Sessions signed with `key` (kept in the store, so they outlive a restart and every
    /// replica accepts them) that last `ttl_s` seconds.
    pub fn new(key: Vec<u8>, ttl_s: u64) -> Self {
        Self {
            key,
            ttl_ms: i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    fn mac(&self, purpose: &[u8], payload: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return Vec::new();
        };
        mac.update(purpose);
        mac.update(b".");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    /// `payload` with its MAC for `purpose`, as a cookie value.
    pub fn seal(&self, purpose: &str, payload: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(self.mac(purpose.as_bytes(), payload.as_bytes()))
        )
    }

    /// The payload of a value [`Sessions::seal`] made for `purpose`, if unaltered.
    pub fn unseal(&self, purpose: &str, value: &str) -> Option<String> {
        let (payload, mac) = value.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !bool::from(self.mac(purpose.as_bytes(), &payload).ct_eq(&mac)) {
            return None;
        }
        String::from_utf8(payload).ok()
    }

    /// A new session for `key_id` (a key's id, or an OIDC user's [`user_session_id`]):
    /// the cookie's value.
    pub fn issue(&self, key_id: &str, kind: KeyKind) -> (String, Session) {
        let session = Session {
            key_id: key_id.to_owned(),
            kind,
            expires_at_ms: crate::ids::now_ms().saturating_add(self.ttl_ms),
            nonce: crate::ids::new_id(""),
        };
        let payload = format!(
            "{}|{}|{}|{}",
            session.kind.as_str(),
            session.key_id,
            session.expires_at_ms,
            session.nonce
        );
        (self.seal("session", &payload), session)
    }

    /// The session a cookie value stands for, if it is ours and has not expired.
    pub fn open(&self, value: &str) -> Option<Session> {
        let payload = self.unseal("session", value)?;
        let mut parts = payload.splitn(4, '|');
        let kind = match parts.next()? {
            "admin" => KeyKind::Admin,
            "standard" => KeyKind::Standard,
            _ => return None,
        };
        let key_id = parts.next()?.to_owned();
        let expires_at_ms: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        (expires_at_ms > crate::ids::now_ms()).then_some(Session {
            key_id,
            kind,
            expires_at_ms,
            nonce,
        })
    }

    /// The token changes must carry, bound to this one session.
    pub fn csrf(&self, session: &Session) -> String {
        let bound = format!("{}|{}", session.key_id, session.nonce);
        URL_SAFE_NO_PAD.encode(self.mac(b"csrf", bound.as_bytes()))
    }

    fn csrf_matches(&self, session: &Session, presented: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session cookie's value, if the request carries one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// The `Set-Cookie` value for a session: unreadable to scripts, never sent cross-site,
/// and `Secure` when the console is reached over TLS.
pub fn set_cookie(value: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the client reached us over TLS (directly named in `public_url`, or through a
/// proxy that says so).
pub fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The principal a request's session cookie stands for: `None` when it presents a key
/// instead, or no cookie at all. The key behind the session is looked up again, so a
/// revoked or expired key ends its sessions; a change without the session's CSRF token
/// is refused.
pub fn principal(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<(Principal, Session), ApiError>> {
    if headers.contains_key("x-api-key") || headers.contains_key(axum::http::header::AUTHORIZATION)
    {
        return None;
    }
    let sessions = state.console.as_deref()?;
    let value = cookie(headers)?;
    Some(check(state, sessions, value, method, headers))
}

fn check(
    state: &AppState,
    sessions: &Sessions,
    value: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(Principal, Session), ApiError> {
    let session = sessions.open(value).ok_or_else(|| {
        ApiError::unauthenticated("The console session has expired; sign in again")
    })?;
    if !matches!(*method, Method::GET | Method::HEAD) {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !sessions.csrf_matches(&session, presented) {
            return Err(ApiError::new(
                ErrorType::PermissionError,
                format!("{CSRF_HEADER}: a console change needs this session's CSRF token"),
            ));
        }
    }
    let principal = if let Some(user) = session.key_id.strip_prefix(USER) {
        user_principal(state, user, session.kind)?
    } else if session.key_id == Principal::configured(session.kind).key_id {
        // A configured key taken out of the config takes its sessions with it.
        if !state.auth.has_configured(session.kind) {
            return Err(ApiError::unauthenticated("invalid session"));
        }
        Principal::configured(session.kind)
    } else {
        let controls = state
            .auth
            .controls()
            .ok_or_else(|| ApiError::unauthenticated("invalid session"))?;
        match controls.key_by_id(&session.key_id)? {
            Some(key) if key.usable() && key.kind == session.kind => Principal {
                key_id: key.id,
                kind: key.kind,
                workspace_id: key.workspace_id.unwrap_or_default(),
                workspace: key.workspace_name.unwrap_or_default(),
            },
            _ => {
                return Err(ApiError::unauthenticated(
                    "The key this console session was opened with is no longer usable",
                ))
            }
        }
    };
    Ok((principal, session))
}

/// An OIDC user's principal, as the store has them now: an admin session needs the
/// `admin` role still; a member's needs the membership and the workspace still.
fn user_principal(state: &AppState, user: &str, kind: KeyKind) -> Result<Principal, ApiError> {
    let gone =
        || ApiError::unauthenticated("This console user's access has changed; sign in again");
    let store = state.store.as_deref().ok_or_else(gone)?;
    let (user_id, workspace_id) = match user.split_once('@') {
        Some((user_id, workspace)) => (user_id, Some(workspace)),
        None => (user, None),
    };
    let found = store.user(user_id)?.ok_or_else(gone)?;
    let key_id = format!("{USER}{user_id}");
    match (kind, workspace_id) {
        (KeyKind::Admin, None) if found.role == "admin" => Ok(Principal {
            key_id,
            kind: KeyKind::Admin,
            workspace_id: String::new(),
            workspace: String::new(),
        }),
        (KeyKind::Standard, Some(workspace_id)) => {
            store.member(workspace_id, user_id)?.ok_or_else(gone)?;
            let workspace = store
                .workspace(workspace_id)?
                .filter(|w| w.archived_at.is_none())
                .ok_or_else(gone)?;
            Ok(Principal {
                key_id,
                kind: KeyKind::Standard,
                workspace_id: workspace.id,
                workspace: workspace.name,
            })
        }
        _ => Err(gone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Principal {
        Principal::configured(KeyKind::Admin)
    }

    #[test]
    fn a_session_opens_only_unaltered_and_unexpired() {
        let sessions = Sessions::new(b"k".to_vec(), 60);
        let (value, issued) = sessions.issue(&admin().key_id, KeyKind::Admin);
        assert_eq!(sessions.open(&value), Some(issued.clone()));
        let (payload, mac) = value.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
                .unwrap()
                .replace("admin|", "standard|"),
        );
        assert_eq!(sessions.open(&format!("{forged}.{mac}")), None);
        assert_eq!(Sessions::new(b"other".to_vec(), 60).open(&value), None);
        let expired = Sessions::new(b"k".to_vec(), 0);
        let (value, _) = expired.issue(&admin().key_id, KeyKind::Admin);
        assert_eq!(expired.open(&value), None);
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_session() {
        let sessions = Sessions::new(b"k".to_vec(), 60);
        let (_, one) = sessions.issue(&admin().key_id, KeyKind::Admin);
        let (_, two) = sessions.issue(&admin().key_id, KeyKind::Admin);
        assert!(sessions.csrf_matches(&one, &sessions.csrf(&one)));
        assert!(!sessions.csrf_matches(&one, &sessions.csrf(&two)));
        assert!(!sessions.csrf_matches(&one, ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; missive_console=v.m; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers), Some("v.m"));
        assert!(set_cookie("v", 5, true).contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie("v", 5, true).ends_with("; Secure"));
    }
}
