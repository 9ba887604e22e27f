//! Logging in and staying logged in: the login and sign-up forms, the session cookie, the
//! login session kept in the session store (Redis or in-process) with an expiry that
//! slides on every request, CSRF tokens bound to the session, and login attempts limited
//! per address and per username.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{WebState, pages};
use crate::core::error::chain;

/// The session cookie.
pub const COOKIE_NAME: &str = "gptbot_session";

/// A logged-in visitor: who, and the CSRF token every form and API call must carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub user: String,
    pub csrf: String,
    /// The account's version when the session opened ([`WebAccounts::version`]).
    ///
    /// [`WebAccounts::version`]: crate::accounts::WebAccounts::version
    #[serde(default)]
    pub since: i64,
}

/// Why a request is not served.
pub enum Denied {
    /// No (or an expired) session: to the login page.
    NotLoggedIn,
    /// The CSRF token is missing or wrong, or the request came from another site.
    Forbidden,
    /// The session store failed.
    Unavailable,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::NotLoggedIn => (
                StatusCode::SEE_OTHER,
                [(LOCATION, HeaderValue::from_static("/login"))],
            )
                .into_response(),
            Denied::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden: the form is stale or came from another site. Reload the page.",
            )
                .into_response(),
            Denied::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store is unavailable. Please try again in a moment.",
            )
                .into_response(),
        }
    }
}

/// 32 random bytes, URL-safe: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The store key of a login session (kept beside /link codes, with its own expiry).
fn key(id: &str) -> String {
    format!("web-session:{id}")
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The `Set-Cookie` header for session `id`; `None` deletes the cookie.
pub fn set_cookie(state: &WebState, id: Option<&str>) -> HeaderValue {
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = match id {
        Some(id) => format!(
            "{COOKIE_NAME}={id}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            state.settings.session_ttl.as_secs()
        ),
        None => format!("{COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax{secure}"),
    };
    HeaderValue::from_str(&text).expect("a cookie of URL-safe characters")
}

/// Constant-time comparison, so a CSRF token cannot be guessed byte by byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A request from a page of another site (its `Origin` names another host): refused
/// for every state change, the login included.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

impl WebState {
    /// The logged-in visitor, their session's expiry pushed forward; with the cookie to
    /// send back (its `Max-Age` pushed forward too).
    pub async fn login(&self, headers: &HeaderMap) -> Result<(String, Login), Denied> {
        let id = cookie_value(headers).ok_or(Denied::NotLoggedIn)?;
        let raw = self
            .sessions
            .touch_code(&key(&id), self.settings.session_ttl)
            .await
            .map_err(|e| {
                tracing::error!(error = %chain(&e), "could not read a web session");
                Denied::Unavailable
            })?
            .ok_or(Denied::NotLoggedIn)?;
        let login: Login = serde_json::from_str(&raw).map_err(|_| Denied::NotLoggedIn)?;
        // A removed account, or a changed password, ends the sessions opened before.
        match self.accounts.version(&login.user).await {
            Ok(Some(version)) if version == login.since => Ok((id, login)),
            Ok(_) => {
                tracing::info!(user = %login.user, "web session ended: the account was removed or its password changed");
                let _ = self.sessions.take_code(&key(&id)).await;
                Err(Denied::NotLoggedIn)
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "could not check a web account");
                Err(Denied::Unavailable)
            }
        }
    }

    /// As [`WebState::login`], for a state change: the CSRF token must match and the
    /// request must come from this site.
    pub async fn login_for_change(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(String, Login), Denied> {
        if cross_site(headers) {
            return Err(Denied::Forbidden);
        }
        let (id, login) = self.login(headers).await?;
        let sent = csrf
            .map(str::to_string)
            .or_else(|| {
                headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if !same(&sent, &login.csrf) {
            return Err(Denied::Forbidden);
        }
        Ok((id, login))
    }

    /// Opens a login session for `user`; returns the session id.
    async fn open(&self, user: &str, since: i64) -> Result<String, Denied> {
        let login = Login {
            user: user.to_string(),
            csrf: random_token(),
            since,
        };
        let value = serde_json::to_string(&login).expect("a login serializes");
        for _ in 0..3 {
            let id = random_token();
            match self
                .sessions
                .put_code(&key(&id), &value, self.settings.session_ttl)
                .await
            {
                Ok(true) => return Ok(id),
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "could not store a web session");
                    return Err(Denied::Unavailable);
                }
            }
        }
        Err(Denied::Unavailable)
    }
}

/// Login attempts: per address and per username, so neither one address nor many
/// addresses can try passwords quickly.
pub struct Attempts {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<String>,
}

impl Default for Attempts {
    fn default() -> Attempts {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("not zero"));
        Attempts {
            by_address: RateLimiter::keyed(per_minute(20)),
            by_user: RateLimiter::keyed(per_minute(5)),
        }
    }
}

impl Attempts {
    fn allow(&self, address: IpAddr, user: &str) -> bool {
        // Both are counted, so a refused address does not spare the user's budget.
        let address_ok = self.by_address.check_key(&address).is_ok();
        let user_ok = self.by_user.check_key(&user.to_ascii_lowercase()).is_ok();
        address_ok && user_ok
    }
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// What every failed login gets, whatever failed.
const WRONG: &str = "Wrong username or password.";

pub async fn login_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if state.login(&headers).await.is_ok() {
        return redirect("/", None);
    }
    pages::login(&state, None, "").into_response()
}

/// A login or sign-up form's page (with an error, and the name typed so far).
type FormPage = fn(&WebState, Option<&str>, &str) -> axum::response::Html<String>;

/// What every credentials form checks first: it comes from this site, and neither its
/// address nor its username is trying too often. `Some` is the refusal.
fn refused(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    username: &str,
    page: FormPage,
) -> Option<Response> {
    if cross_site(headers) {
        return Some(Denied::Forbidden.into_response());
    }
    let address =
        super::client::client_address(peer.ip(), headers, &state.settings.trusted_proxies);
    if !state.attempts.allow(address, username.trim()) {
        tracing::warn!(%address, "web login attempts rate-limited");
        let page = page(
            state,
            Some("Too many attempts. Please wait a minute."),
            username,
        );
        return Some((StatusCode::TOO_MANY_REQUESTS, page).into_response());
    }
    None
}

/// Opens a session for `user` (at account version `since`) and sends the browser to
/// the chat with its cookie.
async fn logged_in(state: &WebState, user: &str, since: i64, how: &str) -> Response {
    match state.open(user, since).await {
        Ok(id) => {
            tracing::info!(user = %user, how, "web session opened");
            redirect("/", Some(set_cookie(state, Some(&id))))
        }
        Err(denied) => denied.into_response(),
    }
}

pub async fn login_submit(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Response {
    if let Some(refusal) = refused(&state, peer, &headers, &form.username, pages::login) {
        return refusal;
    }
    let password = SecretString::from(form.password);
    match state.accounts.login(&form.username, &password).await {
        Ok(Some((user, since))) => logged_in(&state, &user, since, "login").await,
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            pages::login(&state, Some(WRONG), &form.username),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %chain(&e), "web login failed");
            Denied::Unavailable.into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (id, login) = match state.login_for_change(&headers, Some(&form.csrf)).await {
        Ok(found) => found,
        Err(Denied::NotLoggedIn) => return redirect("/login", None),
        Err(denied) => return denied.into_response(),
    };
    if let Err(e) = state.sessions.take_code(&key(&id)).await {
        tracing::error!(error = %chain(&e), "could not delete a web session");
        return Denied::Unavailable.into_response();
    }
    tracing::info!(user = %login.user, "web logout");
    redirect("/login", Some(set_cookie(&state, None)))
}

pub async fn signup_page(State(state): State<WebState>) -> Response {
    if !state.settings.signup {
        return StatusCode::NOT_FOUND.into_response();
    }
    pages::signup(&state, None, "").into_response()
}

pub async fn signup_submit(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Credentials>,
) -> Response {
    if !state.settings.signup {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(refusal) = refused(&state, peer, &headers, &form.username, pages::signup) {
        return refusal;
    }
    let password = SecretString::from(form.password);
    match state.accounts.add(&form.username, &password).await {
        Ok((user, since)) => logged_in(&state, &user, since, "sign-up").await,
        Err(crate::accounts::AccountError::Db(e)) => {
            tracing::error!(error = %chain(&*e), "web sign-up failed");
            Denied::Unavailable.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            pages::signup(&state, Some(&e.to_string()), &form.username),
        )
            .into_response(),
    }
}

/// A 303 to `to`, with a cookie to set.
pub fn redirect(to: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static(to))],
    )
        .into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; gptbot_session=abc_DEF-1; b=2"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc_DEF-1"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }

    #[test]
    fn another_sites_origin_is_cross_site() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("chat.example:8081"));
        assert!(!cross_site(&headers), "no Origin: a same-site form post");
        headers.insert(
            "origin",
            HeaderValue::from_static("http://chat.example:8081"),
        );
        assert!(!cross_site(&headers));
        headers.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&headers));
        headers.insert("origin", HeaderValue::from_static("null"));
        assert!(cross_site(&headers));
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..42]));
    }
}
