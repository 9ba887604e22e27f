//! The web front (`web.listen`): a third platform on the same core. Users log in
//! ([`auth`]: argon2id accounts, a cookie session in the session store), chat on a page
//! that streams the answer ([`chat`]), and admins manage balances and access
//! ([`admin`]). Pages are server-rendered ([`pages`]); the one script and the style sheet
//! are served by the binary. Every response carries the security headers.

pub mod admin;
pub mod attempts;
pub mod auth;
pub mod chat;
pub mod client;
pub mod markdown;
pub mod pages;
mod usage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::accounts::WebAccounts;
use crate::chat::Conversation;
use crate::config::WebSettings;
use crate::core::error::chain;
use crate::core::event::UserId;
use crate::core::session::SessionStore;
use crate::quota::QuotaService;

/// What every handler shares.
#[derive(Clone)]
pub struct WebState {
    pub conversation: Arc<Conversation>,
    pub sessions: Arc<dyn SessionStore>,
    pub quota: QuotaService,
    pub accounts: WebAccounts,
    pub settings: WebSettings,
    pub bot_name: String,
    pub gate: Arc<attempts::Gate>,
    next_message: Arc<AtomicU64>,
}

impl WebState {
    pub fn new(
        conversation: Arc<Conversation>,
        sessions: Arc<dyn SessionStore>,
        quota: QuotaService,
        accounts: WebAccounts,
        settings: WebSettings,
        bot_name: String,
    ) -> WebState {
        WebState {
            conversation,
            sessions,
            quota,
            accounts,
            gate: Arc::new(attempts::Gate::new(settings.login_attempts_per_second)),
            settings,
            bot_name,
            next_message: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Login limits counted with every replica's attempts (with `REDIS_URL`).
    pub fn with_shared_limits(
        mut self,
        rates: Option<Arc<dyn crate::core::coordination::SharedRates>>,
    ) -> WebState {
        let per_second = self.settings.login_attempts_per_second;
        self.gate = Arc::new(attempts::Gate::new(per_second).shared(rates));
        self
    }

    /// The header's balance line; a database hiccup shows as such, not as an error page.
    pub async fn balance_text(&self, user: &UserId) -> String {
        match self.quota.balance(user).await {
            Ok(balance) => pages::balance_text(&balance),
            Err(e) => {
                tracing::warn!(error = %chain(&e), "could not read a balance for the page");
                "balance unavailable".to_string()
            }
        }
    }
}

/// The policy every page is served with: scripts and styles from this site only (no
/// inline code), no framing, no plugins, forms only to this site.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The web front's routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(chat::page))
        .route("/api/send", post(chat::send))
        .route(
            "/login",
            get(auth::login_page)
                .post(auth::login_submit)
                .layer(DefaultBodyLimit::max(auth::FORM_LIMIT)),
        )
        .route(
            "/signup",
            get(auth::signup_page)
                .post(auth::signup_submit)
                .layer(DefaultBodyLimit::max(auth::FORM_LIMIT)),
        )
        .route("/logout", post(auth::logout))
        .route("/admin", get(admin::page))
        .route("/admin/action", post(admin::act))
        .route(
            "/static/app.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("assets/app.js"),
                )
            }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("assets/app.css")) }),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Listens on `addr` and serves the web front until `shutdown` turns true; returns the
/// bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // The decoy hash for unknown usernames is made now, so the first failed login takes
    // no longer than the others.
    state.accounts.warm().await;
    if !state.settings.signup && state.accounts.list().await.is_ok_and(|a| a.is_empty()) {
        tracing::warn!(
            "the web front has no accounts yet and web.signup is off: add one with `gptbot web user add <name>`"
        );
    }
    tracing::info!(addr = %bound, "serving the web front");
    let task = tokio::spawn(crate::ops::http::serve(
        listener,
        router(state),
        shutdown.cancelled_owned(),
    ));
    Ok((bound, task))
}
