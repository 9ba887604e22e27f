//! Logging in and staying logged in: the login and sign-up forms, the session cookie, the
//! login session kept in the session store (Redis or in-process) with an expiry that
//! slides on every request, CSRF tokens bound to the session, and login attempts limited
//! (see [`super::attempts`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::attempts::{self, Refusal};
use super::{WebState, pages};
use crate::core::error::chain;
use crate::core::metrics::WEB_LOGINS_REFUSED;

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
    crate::core::token::random().expect("the OS random source works")
}

/// The store key of a login session (kept beside /link codes, with its own expiry).
fn key(id: &str) -> String {
    format!("web-session:{id}")
}

/// The value of cookie `name` the browser sent, if it has the shape of our tokens (at
/// most 64 bytes).
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
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
        let id = cookie_value(headers, COOKIE_NAME).ok_or(Denied::NotLoggedIn)?;
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

/// Longest form body taken on /login and /signup: a username, a password and a CSRF
/// token fit in far less; anything larger is refused (413) before it is read.
pub const FORM_LIMIT: usize = 4096;

/// What every credentials form checks first: it comes from this site, and neither its
/// address nor the whole front is trying too often. `Some` is the refusal. Nothing here
/// is keyed on or echoes what the form said.
async fn refused(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    page: FormPage,
) -> Option<Response> {
    if cross_site(headers) {
        return Some(Denied::Forbidden.into_response());
    }
    let address =
        super::client::client_address(peer.ip(), headers, &state.settings.trusted_proxies);
    state
        .gate
        .admit(address)
        .await
        .err()
        .map(|refusal| too_many(state, refusal, page, ""))
}

/// The page for an attempt refused by a limit (429, or 503 when the front is busy).
fn too_many(state: &WebState, refusal: Refusal, page: FormPage, name: &str) -> Response {
    metrics::counter!(WEB_LOGINS_REFUSED, "reason" => refusal.label()).increment(1);
    tracing::debug!(
        reason = refusal.label(),
        "web login attempt refused by a limit"
    );
    let status = match refusal {
        Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    (status, page(state, Some(refusal.sentence()), name)).into_response()
}

/// Opens a session for `user` (at account version `since`) and sends the browser to
/// the chat with its cookie, and the device cookie when there is one.
async fn logged_in(
    state: &WebState,
    user: &str,
    since: i64,
    how: &str,
    device: Option<HeaderValue>,
) -> Response {
    match state.open(user, since).await {
        Ok(id) => {
            tracing::info!(user = %user, how, "web session opened");
            let mut response = redirect("/", Some(set_cookie(state, Some(&id))));
            if let Some(device) = device {
                response.headers_mut().append(SET_COOKIE, device);
            }
            response
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
    if let Some(refusal) = refused(&state, peer, &headers, pages::login).await {
        return refusal;
    }
    // A name no account can have is a wrong login, and is neither keyed on nor echoed.
    let Ok(name) = crate::accounts::username(&form.username) else {
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(&state, Some(WRONG), ""),
        )
            .into_response();
    };
    // Others' failures lock the account out, but not a browser that logged in to it.
    if state.gate.locked(&name).await && !attempts::known_device(&state, &headers, &name).await {
        return too_many(&state, Refusal::Account, pages::login, &name);
    }
    let password = SecretString::from(form.password);
    match state.accounts.login(&name, &password).await {
        Ok(Some((user, since))) => {
            let device = attempts::remember_device(&state, &user).await;
            logged_in(&state, &user, since, "login", device).await
        }
        Ok(None) => {
            state.gate.failed(&name).await;
            (
                StatusCode::UNAUTHORIZED,
                pages::login(&state, Some(WRONG), &name),
            )
                .into_response()
        }
        Err(crate::accounts::AccountError::Busy) => {
            too_many(&state, Refusal::Busy, pages::login, &name)
        }
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
    if let Some(refusal) = refused(&state, peer, &headers, pages::signup).await {
        return refusal;
    }
    let name = match crate::accounts::username(&form.username) {
        Ok(name) => name,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                pages::signup(&state, Some(&e.to_string()), ""),
            )
                .into_response();
        }
    };
    // A name the configuration or an access rule speaks of (an admin, an allowed user)
    // is not for a stranger to take: it would come with its rights.
    let subject = crate::core::event::UserId::new(crate::core::event::Platform::Web, &name);
    let taken = match state.conversation.access().names(&subject).await {
        Ok(named) => named,
        Err(e) => {
            tracing::error!(error = %chain(&e), "web sign-up could not read the access rules");
            return Denied::Unavailable.into_response();
        }
    };
    let password = SecretString::from(form.password);
    let added = if taken {
        Err(crate::accounts::AccountError::Taken(name.clone()))
    } else {
        state.accounts.sign_up(&name, &password).await
    };
    match added {
        Ok((user, since)) => {
            let device = attempts::remember_device(&state, &user).await;
            logged_in(&state, &user, since, "sign-up", device).await
        }
        Err(crate::accounts::AccountError::Db(e)) => {
            tracing::error!(error = %chain(&*e), "web sign-up failed");
            Denied::Unavailable.into_response()
        }
        Err(crate::accounts::AccountError::Busy) => {
            too_many(&state, Refusal::Busy, pages::signup, &name)
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            pages::signup(&state, Some(&e.to_string()), &name),
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
        assert_eq!(
            cookie_value(&headers, COOKIE_NAME).as_deref(),
            Some("abc_DEF-1")
        );
        assert_eq!(cookie_value(&HeaderMap::new(), COOKIE_NAME), None);
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
