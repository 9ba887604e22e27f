//! The web front's HTML, server-rendered with maud (escaped by default): login, sign-up,
//! the chat page and the admin page. No inline script or style — the
//! Content-Security-Policy forbids them — and nothing from a CDN.

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::WebState;
use super::markdown;
use crate::core::session::{Role, Turn};
use crate::quota::{Balance, LedgerEntry};

fn layout(state: &WebState, title: &str, csrf: Option<&str>, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(csrf) = csrf { meta name="csrf-token" content=(csrf); }
                title { (title) " · " (state.bot_name) }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body { (body) }
        }
    };
    Html(page.into_string())
}

/// What a balance reads like in the header.
pub fn balance_text(balance: &Balance) -> String {
    if balance.unlimited {
        "Unlimited tokens".to_string()
    } else {
        format!("{} tokens left", balance.remaining)
    }
}

fn credentials_form(action: &str, button: &str, error: Option<&str>, username: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            label for="username" { "Username" }
            input #username type="text" name="username" value=(username)
                autocomplete="username" autocapitalize="none" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password"
                autocomplete=(if action == "/signup" { "new-password" } else { "current-password" }) required;
            input.primary type="submit" value=(button);
        }
    }
}

pub fn login(state: &WebState, error: Option<&str>, username: &str) -> Html<String> {
    layout(
        state,
        "Log in",
        None,
        html! {
            main.card {
                h1 { (state.bot_name) }
                (credentials_form("/login", "Log in", error, username))
                @if state.settings.signup {
                    p.notice { "No account? " a href="/signup" { "Sign up" } }
                }
            }
        },
    )
}

pub fn signup(state: &WebState, error: Option<&str>, username: &str) -> Html<String> {
    layout(
        state,
        "Sign up",
        None,
        html! {
            main.card {
                h1 { "Sign up" }
                (credentials_form("/signup", "Create account", error, username))
                p.notice { "Already have one? " a href="/login" { "Log in" } }
            }
        },
    )
}

fn header(state: &WebState, user: &str, csrf: &str, balance: &str, admin: bool) -> Markup {
    html! {
        header {
            h1 { (state.bot_name) }
            span #balance.balance { (balance) }
            nav {
                a href="/" { "Chat" }
                @if admin { a href="/admin" { "Admin" } }
                span.notice { (user) }
                form.inline method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Log out" }
                }
            }
        }
    }
}

pub struct ChatView<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub balance: String,
    pub admin: bool,
    pub turns: &'a [Turn],
    /// The user's last two weeks, for the usage chart.
    pub usage: &'a [crate::quota::usage::DayUsage],
}

pub fn chat(state: &WebState, view: ChatView<'_>) -> Html<String> {
    layout(
        state,
        "Chat",
        Some(view.csrf),
        html! {
            (header(state, view.user, view.csrf, &view.balance, view.admin))
            main {
                nav.tools {
                    button type="button" data-command="/reset" { "Reset" }
                    " "
                    button type="button" data-command="/quota" { "Quota" }
                    " "
                    button type="button" data-command="/system" { "System prompt" }
                    " "
                    button type="button" data-command="/retry" { "Retry" }
                    " "
                    button type="button" data-command="/cancel" { "Stop" }
                }
                details.usage-box {
                    summary { "Your usage" }
                    (super::usage::chart(view.usage))
                }
                #log aria-live="polite" {
                    @for turn in view.turns {
                        @match turn.role {
                            Role::User => div.msg.user { (turn.content) },
                            Role::Assistant => div.msg.assistant {
                                (PreEscaped(markdown::render(&turn.content)))
                            },
                        }
                    }
                }
            }
            #composer {
                form #send method="post" action="/api/send" {
                    textarea name="text" rows="2" placeholder="Message" aria-label="Message" required {}
                    button.primary type="submit" { "Send" }
                }
            }
        },
    )
}

pub struct AdminView<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub balance: String,
    pub accounts: &'a [(String, Balance)],
    pub pages: Pages<'a>,
    pub web_users: &'a [(String, i64)],
    pub notice: Option<&'a str>,
    /// A user's ledger, when one was asked for.
    pub ledger: Option<(&'a str, &'a [LedgerEntry])>,
    /// That user's last two weeks, for the usage chart.
    pub usage: &'a [crate::quota::usage::DayUsage],
}

/// Where the accounts table is: the search, the page (from 1) and how many match.
pub struct Pages<'a> {
    pub find: &'a str,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

impl Pages<'_> {
    /// The admin page showing page `page` of the same search.
    fn link(&self, page: i64) -> String {
        let mut link = format!("/admin?page={page}");
        if !self.find.is_empty() {
            link.push_str("&find=");
            link.push_str(&super::admin::url_encode(self.find));
        }
        link
    }

    fn pager(&self) -> Markup {
        let first = (self.page - 1) * self.per_page + 1;
        let last = (self.page * self.per_page).min(self.total);
        html! {
            p.pager {
                @if self.total == 0 {
                    "No account matches."
                } @else if first > self.total {
                    "No accounts on this page. " a href=(self.link(1)) { "First page" }
                } @else {
                    "Accounts " (first) "–" (last) " of " (self.total) "."
                    @if self.page > 1 { " " a href=(self.link(self.page - 1)) rel="prev" { "Previous" } }
                    @if last < self.total { " " a href=(self.link(self.page + 1)) rel="next" { "Next" } }
                }
            }
        }
    }
}

fn when(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| at.to_string())
}

pub fn admin(state: &WebState, view: AdminView<'_>) -> Html<String> {
    layout(
        state,
        "Admin",
        Some(view.csrf),
        html! {
            (header(state, view.user, view.csrf, &view.balance, true))
            main.admin {
                @if let Some(notice) = view.notice { p.notice role="status" { (notice) } }
                h2 { "Change a user" }
                form.action method="post" action="/admin/action" {
                    input type="hidden" name="csrf" value=(view.csrf);
                    select name="op" aria-label="Operation" {
                        option value="grant" { "grant tokens" }
                        option value="set" { "set remaining" }
                        option value="refill" { "set refill" }
                        option value="allow" { "allow" }
                        option value="deny" { "deny" }
                        option value="refund" { "refund a payment (charge id)" }
                    }
                    input type="text" name="user" placeholder="web:ann, telegram:123, group:discord:9, or a charge id" required aria-label="User or charge id";
                    input type="text" name="amount" placeholder="tokens / unlimited / default" aria-label="Amount";
                    button.primary type="submit" { "Apply" }
                }
                h2 { "Users" }
                form.find method="get" action="/admin" {
                    input type="search" name="find" value=(view.pages.find) placeholder="web:ann, telegram:123" aria-label="Find a user";
                    button type="submit" { "Find" }
                }
                (view.pages.pager())
                table {
                    thead { tr {
                        th { "user" } th.num { "remaining" } th.num { "reserved" }
                        th.num { "used" } th.num { "granted" } th.num { "requests" } th { "" }
                    } }
                    tbody {
                        @for (user, b) in view.accounts {
                            tr {
                                td { (user) }
                                td.num { @if b.unlimited { "unlimited" } @else { (b.remaining) } }
                                td.num { (b.reserved) } td.num { (b.used) }
                                td.num { (b.granted) } td.num { (b.requests) }
                                td { a href={ "/admin?ledger=" (user) } { "ledger" } }
                            }
                        }
                    }
                }
                h2 { "Web accounts" }
                p.notice { "Made with " code { "gptbot web user add <name>" } "." }
                ul {
                    @for (name, created) in view.web_users {
                        li { (name) span.notice { " since " (when(*created)) } }
                    }
                }
                @if let Some((user, entries)) = view.ledger {
                    h2 #ledger { "Ledger of " (user) }
                    (super::usage::chart(view.usage))
                    table {
                        thead { tr {
                            th { "time (UTC)" } th { "kind" } th.num { "granted" }
                            th.num { "remaining" } th.num { "reserved" } th.num { "used" }
                            th.num { "balance" } th { "model" }
                        } }
                        tbody {
                            @for e in entries {
                                tr {
                                    td { (when(e.at)) } td { (e.kind) }
                                    td.num { (e.d_granted) } td.num { (e.d_remaining) }
                                    td.num { (e.d_reserved) } td.num { (e.d_used) }
                                    td.num { (e.remaining) } td { (e.note.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
