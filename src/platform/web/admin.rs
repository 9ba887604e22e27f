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
use crate::admin::{AdminError, Done, Operator};
use crate::core::admin::{Account, AdminCommand, Subject, parse_amount};
use crate::core::error::{Invalid, chain};
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
    let usage = match &ledger_user {
        Some(user) => state.quota.usage_by_day(user, 14).await.unwrap_or_default(),
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
            usage: &usage,
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
    let (notice, done) = apply(&state, &login.user, &action).await;
    if done {
        tracing::info!(admin = %login.user, op = %action.op, user = %action.user, "web admin action");
    }
    let to = format!("/admin?notice={}", url_encode(&notice));
    (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to)]).into_response()
}

/// The form's operation as the one admin command, or why the form does not make one.
fn command(action: &Action) -> Result<AdminCommand, Invalid> {
    let user = || Ok::<_, Invalid>(Account::Id(Account::parse(&action.user)?.on(None)?));
    Ok(match action.op.as_str() {
        op @ ("allow" | "deny") => AdminCommand::Rule {
            subject: match Subject::parse(&action.user)? {
                // A bare id names no platform here.
                Subject::Account(a) => Subject::Account(Account::Id(a.on(None)?)),
                Subject::ThisChat => {
                    return Err(Invalid(
                        "`chat` means a group in a chat; name it as group:platform:id".into(),
                    ));
                }
                group => group,
            },
            allowed: op == "allow",
        },
        "grant" => AdminCommand::Grant {
            user: user()?,
            tokens: action.amount.trim().parse::<i64>().map_err(|_| {
                Invalid(format!(
                    "`{}` is not a number of tokens",
                    action.amount.trim()
                ))
            })?,
            reason: None,
        },
        "refund" => AdminCommand::Refund {
            charge: action.user.trim().to_string(),
        },
        "set" => AdminCommand::SetQuota {
            user: user()?,
            tokens: parse_amount(&action.amount, "unlimited")?,
        },
        "refill" => AdminCommand::Refill {
            user: user()?,
            tokens: parse_amount(&action.amount, "default")?,
        },
        other => return Err(Invalid(format!("unknown operation `{other}`"))),
    })
}

/// Applies the form's operation; the notice to show, and whether it was done.
async fn apply(state: &WebState, admin: &str, action: &Action) -> (String, bool) {
    let command = match command(action) {
        Ok(command) => command,
        Err(why) => return (why.0, false),
    };
    let by = Operator {
        name: format!("web:{admin}"),
        platform: None,
        group: None,
    };
    match state.conversation.admin_service().apply(&by, command).await {
        Ok(Done::Balance { user, balance, .. }) => {
            (format!("{user}: {}", pages::balance_text(&balance)), true)
        }
        Ok(Done::Rule { subject, allowed }) => (
            format!("{subject} {}", if allowed { "allowed" } else { "denied" }),
            true,
        ),
        Ok(Done::Refunded(payment)) => (payment.refund_report(), true),
        Ok(other) => (format!("{other:?}"), true),
        Err(AdminError::Refused(why)) => (why, false),
        Err(e) => {
            tracing::error!(error = %chain(&e), "web admin action failed");
            ("That did not work; the log says why.".to_string(), false)
        }
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
