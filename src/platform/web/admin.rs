//! The admin page, for admins only (`web:<name>` in `access.admins`): every account with
//! its balance (in pages, searchable), a user's ledger, and grant / set / refill / allow /
//! deny — the same operations as `gptbot quota …` and `gptbot access …`, through the same
//! services.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Denied;
use super::chat::user_id;
use super::{WebState, pages};
use crate::core::error::chain;
use crate::core::event::UserId;

/// Rows of the accounts table, and of a ledger.
const ROWS: i64 = 200;

#[derive(Deserialize, Default)]
pub struct View {
    ledger: Option<String>,
    notice: Option<String>,
    /// Only accounts whose `platform:user` contains this.
    #[serde(default)]
    find: String,
    /// Which page of accounts, from 1.
    page: Option<i64>,
}

async fn admin_login(
    state: &WebState,
    headers: &HeaderMap,
    csrf: Option<&str>,
) -> Result<crate::platform::web::auth::Login, Response> {
    let found = match csrf {
        Some(csrf) => state.login_for_change(headers, Some(csrf)).await,
        None => state.login(headers).await,
    };
    let (_, login) = found.map_err(IntoResponse::into_response)?;
    if !state.conversation.access().is_admin(&user_id(&login.user)) {
        tracing::warn!(user = %login.user, "a non-admin asked for the admin page");
        return Err((StatusCode::FORBIDDEN, "Admins only.").into_response());
    }
    Ok(login)
}

pub async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(view): Query<View>,
) -> Response {
    let login = match admin_login(&state, &headers, None).await {
        Ok(login) => login,
        Err(response) => return response,
    };
    // Bounded so that the offset cannot overflow whatever the query says.
    let page = view.page.unwrap_or(1).clamp(1, 1_000_000);
    let listed = match state
        .quota
        .accounts(&view.find, (page - 1) * ROWS, ROWS)
        .await
    {
        Ok(listed) => listed,
        Err(e) => {
            tracing::error!(error = %chain(&e), "could not list accounts");
            return Denied::Unavailable.into_response();
        }
    };
    let accounts: Vec<(String, crate::quota::Balance)> = listed
        .accounts
        .into_iter()
        .map(|(user, balance)| (user.to_string(), balance))
        .collect();
    let web_users = state.accounts.list().await.unwrap_or_default();
    let ledger_user = view.ledger.as_deref().and_then(|u| UserId::parse(u).ok());
    let entries = match &ledger_user {
        Some(user) => state.quota.history(user, ROWS).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let shown = ledger_user.as_ref().map(ToString::to_string);
    let balance = state.balance_text(&user_id(&login.user)).await;
    pages::admin(
        &state,
        pages::AdminView {
            user: &login.user,
            csrf: &login.csrf,
            balance,
            accounts: &accounts,
            pages: pages::Pages {
                find: view.find.trim(),
                page,
                per_page: ROWS,
                total: listed.total,
            },
            web_users: &web_users,
            notice: view.notice.as_deref(),
            ledger: shown.as_deref().map(|u| (u, entries.as_slice())),
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct Action {
    #[serde(default)]
    csrf: String,
    op: String,
    user: String,
    #[serde(default)]
    amount: String,
}

pub async fn act(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(action): Form<Action>,
) -> Response {
    let login = match admin_login(&state, &headers, Some(&action.csrf)).await {
        Ok(login) => login,
        Err(response) => return response,
    };
    let notice = match apply(&state, &login.user, &action).await {
        Ok(notice) => {
            tracing::info!(admin = %login.user, op = %action.op, user = %action.user, "web admin action");
            notice
        }
        Err(message) => message,
    };
    let to = format!("/admin?notice={}", url_encode(&notice));
    (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to)]).into_response()
}

async fn apply(state: &WebState, admin: &str, action: &Action) -> Result<String, String> {
    let subject = action.user.trim();
    let fail = |e: &(dyn std::error::Error + 'static)| {
        tracing::error!(error = %chain(e), "web admin action failed");
        "That did not work; the log says why.".to_string()
    };
    match action.op.as_str() {
        "allow" | "deny" => {
            let allowed = action.op == "allow";
            let subject = crate::access::parse_subject(subject)?;
            state
                .conversation
                .access()
                .set_rule(&subject, allowed, &format!("web:{admin}"))
                .await
                .map_err(|e| fail(&e))?;
            Ok(format!(
                "{subject} {}",
                if allowed { "allowed" } else { "denied" }
            ))
        }
        op @ ("grant" | "set" | "refill") => {
            let user = UserId::parse(subject)?;
            let balance = match op {
                "grant" => {
                    let tokens = action.amount.trim().parse::<i64>().map_err(|_| {
                        format!("`{}` is not a number of tokens", action.amount.trim())
                    })?;
                    state.quota.grant(&user, tokens).await
                }
                "set" => {
                    let tokens = crate::quota::parse_amount(&action.amount, "unlimited")?;
                    state.quota.set_quota(&user, tokens).await
                }
                _ => {
                    let tokens = crate::quota::parse_amount(&action.amount, "default")?;
                    state.quota.set_refill(&user, tokens).await
                }
            }
            .map_err(|e| fail(&e))?;
            Ok(format!("{user}: {}", pages::balance_text(&balance)))
        }
        other => Err(format!("unknown operation `{other}`")),
    }
}

/// Percent-encodes a query value.
pub(super) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
