//! The web front over HTTP, booted as `gptbot run` boots it, with the fake model, a real
//! redis-server and SQLite: login (same answer for an unknown user and a wrong password),
//! the session cookie's flags, the login session in Redis with a sliding expiry, logout,
//! CSRF, the streamed answer and its history, an exhausted balance, the admin page.

mod common;

use std::time::Duration;

use common::web::*;
use common::*;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

fn session_key(w: &Web, id: &str) -> String {
    format!(
        "{}:code:web-session:{id}",
        w.t.app.settings.redis.key_prefix
    )
}

async fn pttl(w: &Web, id: &str) -> i64 {
    let mut redis = w.t.redis.as_ref().unwrap().client().await;
    redis::cmd("PTTL")
        .arg(session_key(w, id))
        .query_async(&mut redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer_and_the_right_one_a_cookie() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();

    let form = c.get("/login").await;
    assert_eq!(form.status(), StatusCode::OK);
    let headers = form.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = form.text().await.unwrap();
    assert!(html.contains(r#"name="username""#) && html.contains(r#"name="password""#));
    assert!(!html.contains("<script>"), "no inline script");

    let wrong = c.login("ann", "not the password").await;
    let wrong_status = wrong.status();
    let wrong_body = wrong.text().await.unwrap().replace("ann", "USER");
    let unknown = c.login("bob", "not the password").await;
    let unknown_status = unknown.status();
    let unknown_body = unknown.text().await.unwrap().replace("bob", "USER");
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (wrong_status, &wrong_body),
        (unknown_status, &unknown_body),
        "an unknown user must look exactly like a wrong password"
    );
    assert!(wrong_body.contains("Wrong username or password."));
    assert!(c.cookie.is_none(), "no session for a failed login");

    let ok = c.login("Ann", PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()[LOCATION], "/");
    let cookie = c
        .set_cookies
        .iter()
        .rev()
        .find(|c| c.starts_with("gptbot_session="))
        .unwrap()
        .clone();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "Secure only when web.secure_cookies: {cookie}"
    );
    let id = c.cookie.clone().unwrap();
    assert!(id.len() >= 43, "a long random session id: {id}");
    let page = c.get("/").await.text().await.unwrap();
    assert!(page.contains("ann"), "logged in as ann");
    assert!(page.contains("tokens left"), "the balance is shown");
}

#[tokio::test]
async fn the_login_session_is_in_redis_its_expiry_slides_and_logout_deletes_it() {
    let w = spawn_web(
        Options::default()
            .with("GPTBOT__WEB__SESSION_TTL", "60s")
            .with("GPTBOT__WEB__SECURE_COOKIES", "true"),
    )
    .await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    let id = c.cookie.clone().unwrap();
    let cookie = c.set_cookies[0].clone();
    assert!(
        cookie.contains("Max-Age=60") && cookie.contains("Secure"),
        "{cookie}"
    );

    let fresh = pttl(&w, &id).await;
    assert!(fresh > 55_000 && fresh <= 60_000, "TTL {fresh} ms");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let aged = pttl(&w, &id).await;
    assert!(aged < fresh - 1_000, "the TTL runs down: {aged}");
    // A later request pushes it forward again, and the cookie's Max-Age with it.
    let page = c.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let renewed = pttl(&w, &id).await;
    assert!(
        renewed > aged + 1_000,
        "not pushed forward: {aged} → {renewed}"
    );
    assert!(c.set_cookies.last().unwrap().contains("Max-Age=60"));

    // Logging out needs the token, deletes the session and clears the cookie.
    let refused = c.post_form("/logout", &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        pttl(&w, &id).await > 0,
        "still logged in after a refused logout"
    );
    let out = c.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/login");
    assert_eq!(pttl(&w, &id).await, -2, "the key is gone");
    assert!(c.set_cookies.last().unwrap().contains("Max-Age=0"));
    // The old cookie no longer opens anything.
    c.cookie = Some(id);
    let after = c.get("/").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/login");
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_or_from_another_site_are_refused() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    let (status, _) = c.send("hello", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c.send("hello", Some("not-the-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let cross = reqwest::Client::new()
        .post(w.url("/api/send"))
        .header(
            "cookie",
            format!("gptbot_session={}", c.cookie.as_ref().unwrap()),
        )
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(w.t.openai.request_count(), 0, "nothing reached the model");
    // Not logged in: the API says so instead of redirecting a script.
    let mut stranger = w.client();
    let (status, _) = stranger.send("hello", Some(&csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_message_streams_the_answer_as_safe_html_and_the_page_shows_the_history() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    w.t.openai.script([Behavior::text(
        &["Hello", " **world**", " <script>alert(1)</script>"],
        (12, 4),
    )]);
    let (status, stream) = c.send("hi <b>there</b>", Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK);
    let events = events(&stream);
    let messages: Vec<_> = events.iter().filter(|(n, _)| n == "message").collect();
    assert!(!messages.is_empty(), "{stream}");
    let last = messages.last().unwrap();
    assert_eq!(last.1["final"], true);
    let html = final_messages(&stream).pop().unwrap();
    assert!(html.contains("<strong>world</strong>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    let (name, done) = events.last().unwrap();
    assert_eq!(name, "done");
    let user = web_user("ann");
    let balance = common::ledger::settled(&w.t.app.quota, &user, 1).await;
    assert_eq!(
        done["balance"],
        format!("{} tokens left", balance.remaining)
    );

    let request = w.t.openai.requests()[0].clone();
    let asked = request["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    assert_eq!(asked, "hi <b>there</b>");
    // Reloading shows both turns; the user's text escaped, the answer rendered.
    let page = c.get("/").await.text().await.unwrap();
    assert!(page.contains("hi &lt;b&gt;there&lt;/b&gt;"), "{page}");
    assert!(page.contains("<strong>world</strong>"), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    // The usage chart: today's bar carries what the answer used.
    let used = w.t.app.quota.balance(&user).await.unwrap().used;
    assert!(
        page.contains(&format!("last 14 days: {used} in all")),
        "{page}"
    );
    assert_eq!(page.matches("<rect").count(), 14, "{page}");
    assert!(page.contains(&format!("data-used=\"{used}\"")), "{page}");
    common::ledger::assert_books(&w.t.app.quota, &user).await;

    // Commands work from the box and the buttons.
    let (_, stream) = c.send("/reset", Some(&csrf)).await;
    assert!(!final_messages(&stream).is_empty(), "{stream}");
    let key = gptbot::core::event::SessionKey {
        platform: gptbot::core::event::Platform::Web,
        chat: "ann".into(),
        user: "ann".into(),
    };
    assert!(w.t.app.sessions.load(&key).await.unwrap().turns.is_empty());
}

#[tokio::test]
async fn an_exhausted_balance_refuses_without_a_model_call() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let user = web_user("ann");
    w.t.app.quota.set_quota(&user, Some(0)).await.unwrap();
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    let (status, stream) = c.send("a question", Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK);
    let said = final_messages(&stream).join("\n");
    assert!(said.contains("Quota exhausted"), "{said}");
    assert_eq!(w.t.openai.request_count(), 0);
    let balance = w.t.app.quota.balance(&user).await.unwrap();
    assert_eq!(
        (balance.remaining, balance.reserved, balance.used),
        (0, 0, 0)
    );
    common::ledger::assert_books(&w.t.app.quota, &user).await;
}

#[tokio::test]
async fn the_admin_page_is_refused_to_others_and_runs_the_cli_operations_for_admins() {
    let w = spawn_web(Options::default().with("GPTBOT__ACCESS__ADMINS", "web:root")).await;
    w.add_user("ann").await;
    w.add_user("root").await;
    let mut ann = w.client();
    let ann_csrf = ann.logged_in("ann").await;
    assert_eq!(ann.get("/admin").await.status(), StatusCode::FORBIDDEN);
    let forged = ann
        .post_form(
            "/admin/action",
            &[
                ("csrf", &ann_csrf),
                ("op", "grant"),
                ("user", "web:ann"),
                ("amount", "1000"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let mut root = w.client();
    let csrf = root.logged_in("root").await;
    let before = w.t.app.quota.balance(&web_user("ann")).await.unwrap();
    let page = root.get("/admin").await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("web:ann"), "accounts listed: {page}");
    let granted = root
        .post_form(
            "/admin/action",
            &[
                ("csrf", &csrf),
                ("op", "grant"),
                ("user", "web:ann"),
                ("amount", "500"),
            ],
        )
        .await;
    assert_eq!(granted.status(), StatusCode::SEE_OTHER);
    let after = w.t.app.quota.balance(&web_user("ann")).await.unwrap();
    assert_eq!(after.remaining, before.remaining + 500);
    let ledger = root
        .get("/admin?ledger=web:ann")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        ledger.contains("Ledger of web:ann") && ledger.contains("grant"),
        "{ledger}"
    );
    // With the user's usage chart, today's grants (the new account's and the 500) marked.
    assert!(
        ledger.contains("<svg") && ledger.contains("; granted 20500<"),
        "{ledger}"
    );
    // Without the token nothing happens.
    let refused = root
        .post_form(
            "/admin/action",
            &[("op", "grant"), ("user", "web:ann"), ("amount", "1")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Deny works through the same access rules as everywhere.
    root.post_form(
        "/admin/action",
        &[
            ("csrf", &csrf),
            ("op", "deny"),
            ("user", "web:ann"),
            ("amount", ""),
        ],
    )
    .await;
    let (_, stream) = ann.send("may I?", Some(&ann_csrf)).await;
    assert_eq!(
        w.t.openai.request_count(),
        0,
        "a denied user reached the model: {stream}"
    );
    common::ledger::assert_books(&w.t.app.quota, &web_user("ann")).await;
}

/// More accounts than one page: the admin pages through them and finds one by name.
#[tokio::test]
async fn the_admin_page_pages_through_many_accounts_and_finds_one() {
    let w = spawn_web(Options::default().with("GPTBOT__ACCESS__ADMINS", "web:root")).await;
    w.add_user("root").await;
    for i in 0..230 {
        let user = gptbot::core::event::UserId::new(
            gptbot::core::event::Platform::Telegram,
            format!("{}", 5000 + i),
        );
        w.t.app.quota.balance(&user).await.unwrap();
    }
    let mut root = w.client();
    root.logged_in("root").await;
    // Whatever else has an account by now (root's own, opened to show its balance).
    root.get("/admin").await;
    let total = w.t.app.quota.accounts("", 0, 1).await.unwrap().total;
    assert!(total >= 230);
    let first = root.get("/admin").await.text().await.unwrap();
    assert!(
        first.contains(&format!("Accounts 1–200 of {total}.")),
        "{first}"
    );
    assert!(
        first.contains("href=\"/admin?page=2\""),
        "a next link: {first}"
    );
    let second = root.get("/admin?page=2").await.text().await.unwrap();
    assert!(
        second.contains(&format!("Accounts 201–{total} of {total}.")),
        "{second}"
    );
    assert!(second.contains("href=\"/admin?page=1\""), "a previous link");
    let rows = |page: &str| page.matches("/admin?ledger=").count();
    assert_eq!((rows(&first) + rows(&second)) as i64, total);

    let found = root
        .get("/admin?find=telegram%3A5123")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains("Accounts 1–1 of 1."), "{found}");
    assert!(found.contains("/admin?ledger=telegram:5123"), "{found}");
    assert!(
        found.contains("value=\"telegram:5123\""),
        "the search stays in its box"
    );
    let none = root.get("/admin?find=%3Cb%3E").await.text().await.unwrap();
    assert!(none.contains("No account matches."), "{none}");
    assert!(!none.contains("<b>"), "the search is escaped on the page");
    // A page number out of range is a page, not an error.
    let far = root.get("/admin?page=99").await;
    assert_eq!(far.status(), StatusCode::OK);
    assert!(
        far.text()
            .await
            .unwrap()
            .contains("No accounts on this page.")
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_user() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    for _ in 0..5 {
        assert_eq!(
            c.login("ann", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = c.login("ann", "guess").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        c.login("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(c.cookie.is_none());
    // Another user is not locked out by ann's attempts.
    w.add_user("bob").await;
    assert_eq!(
        c.login("bob", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

/// The per-address limit (20 attempts a minute) behind a reverse proxy: with the proxy
/// trusted, visitors are counted apart by the address it forwards; without, a forged
/// `X-Forwarded-For` changes nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_the_address_limit_counts_each_visitor() {
    // Usernames change every attempt so that only the address limit can refuse.
    async fn exhaust(c: &mut common::web::Client, forwarded_for: &str) {
        for i in 0..20 {
            let r = c
                .login_forwarded(&format!("nobody{i}"), "guess", forwarded_for)
                .await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        let r = c
            .login_forwarded("nobody-more", "guess", forwarded_for)
            .await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let w = spawn_web(Options::default().with("GPTBOT__WEB__TRUSTED_PROXIES", "127.0.0.1")).await;
    w.add_user("ann").await;
    let mut c = w.client();
    exhaust(&mut c, "1.1.1.1, 203.0.113.7").await;
    // Another visitor behind the same proxy logs in; the forged first entry is ignored,
    // so 203.0.113.7 stays refused whatever it writes there.
    assert_eq!(
        c.login_forwarded("ann", PASSWORD, "198.51.100.9")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        c.login_forwarded("ann", PASSWORD, "9.9.9.9, 203.0.113.7")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Not trusted (the default): the header is not believed, the connection counts.
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    exhaust(&mut c, "203.0.113.7").await;
    assert_eq!(
        c.login_forwarded("ann", PASSWORD, "198.51.100.9")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn sign_up_is_off_unless_enabled() {
    let w = spawn_web(Options::default()).await;
    let mut c = w.client();
    assert_eq!(c.get("/signup").await.status(), StatusCode::NOT_FOUND);
    let w = spawn_web(Options::default().with("GPTBOT__WEB__SIGNUP", "true")).await;
    let mut c = w.client();
    assert_eq!(c.get("/signup").await.status(), StatusCode::OK);
    let short = c
        .post_form("/signup", &[("username", "cat"), ("password", "short")])
        .await;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let made = c
        .post_form("/signup", &[("username", "cat"), ("password", PASSWORD)])
        .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert!(c.cookie.is_some(), "signed up and logged in");
}

#[tokio::test]
async fn stop_cancels_the_answer_in_progress_and_charges_what_was_shown() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    w.t.openai.script([Behavior::Stream {
        pieces: (0..200).map(|i| format!("word{i} ")).collect(),
        delay: Duration::from_millis(50),
        usage: Some((10, 200)),
    }]);
    let sent_before = w.t.openai.chunks_sent();
    let mut asking = w.client();
    asking.cookie = c.cookie.clone();
    let csrf2 = csrf.clone();
    let long = tokio::spawn(async move { asking.send("write a lot", Some(&csrf2)).await });
    eventually(
        10,
        "the model asked",
        || w.t.openai.request_count() == 1,
        String::new,
    )
    .await;
    // Stopped once some of it was shown.
    eventually(
        10,
        "the answer under way",
        || w.t.openai.chunks_sent() >= sent_before + 8,
        String::new,
    )
    .await;
    let (status, stopped) = c.send("/cancel", Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        final_messages(&stopped).join(" ").contains("Stopped"),
        "{stopped}"
    );
    let (_, stream) = long.await.unwrap();
    let answer = final_messages(&stream).pop().unwrap();
    assert!(answer.contains("(stopped)"), "{answer}");
    assert!(!answer.contains("word199"), "{answer}");
    let user = web_user("ann");
    let balance = common::ledger::settled(&w.t.app.quota, &user, 1).await;
    assert!(
        balance.used > 0 && balance.used < 10 + 200,
        "charged for what was shown: {}",
        balance.used
    );
    common::ledger::assert_books(&w.t.app.quota, &user).await;
}

#[tokio::test]
async fn a_web_user_links_a_telegram_account_with_link() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    let (_, stream) = c.send("/link", Some(&csrf)).await;
    let said = final_messages(&stream).join(" ");
    let code = said
        .split("Your link code is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code shown on the page: {said}"))
        .to_string();
    // Redeemed from Telegram, the Telegram account draws on web:ann's tokens.
    let telegram = RecordingAdapter::new(4096, Duration::from_millis(10));
    w.t.send(&telegram, &dm("77", &format!("/link {code}")))
        .await;
    let telegram_user =
        gptbot::core::event::UserId::new(gptbot::core::event::Platform::Telegram, "77");
    assert_eq!(
        w.t.app.quota.linked_to(&telegram_user).await.unwrap(),
        Some(web_user("ann")),
        "{:?}",
        telegram.messages()
    );
}

#[tokio::test]
async fn removing_an_account_or_changing_its_password_ends_its_sessions() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    w.add_user("bob").await;
    let accounts = gptbot::accounts::WebAccounts::new(w.t.app.db.clone());
    let mut ann = w.client();
    ann.logged_in("ann").await;
    let mut bob = w.client();
    bob.logged_in("bob").await;
    // A new password: sessions opened with the old one end; a new login works. (The
    // account's version is its change time in ms: the change lands in a later one.)
    let opened = chrono::Utc::now().timestamp_millis();
    eventually(
        1,
        "the next millisecond",
        || chrono::Utc::now().timestamp_millis() > opened,
        String::new,
    )
    .await;
    accounts
        .set_password("ann", &secrecy::SecretString::from("another good password"))
        .await
        .unwrap();
    let ended = ann.get("/").await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    assert_eq!(ended.headers()[LOCATION], "/login");
    assert_eq!(
        ann.login("ann", "another good password").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(ann.get("/").await.status(), StatusCode::OK);
    // A removed account is logged out at its next request.
    assert_eq!(bob.get("/").await.status(), StatusCode::OK);
    accounts.remove("bob", false).await.unwrap();
    assert_eq!(bob.get("/").await.status(), StatusCode::SEE_OTHER);
}

/// The Retry button (`/retry`) answers the last question anew: the stream carries the
/// new answer, and the page, reloaded, shows it in place of the old one.
#[tokio::test]
async fn retry_from_the_page_replaces_the_last_answer() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut c = w.client();
    let csrf = c.logged_in("ann").await;
    let page = c.get("/").await.text().await.unwrap();
    assert!(
        page.contains(r#"data-command="/retry""#),
        "no Retry button: {page}"
    );
    w.t.openai.script([
        Behavior::text(&["first take"], (12, 2)),
        Behavior::text(&["second ", "take"], (12, 2)),
    ]);
    c.send("a question", Some(&csrf)).await;
    let (status, stream) = c.send("/retry", Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK);
    let said = final_messages(&stream).join("\n");
    assert!(said.contains("second take"), "{said}");
    let user = web_user("ann");
    common::ledger::settled(&w.t.app.quota, &user, 2).await;
    let page = c.get("/").await.text().await.unwrap();
    assert!(page.contains("second take"), "{page}");
    assert!(
        !page.contains("first take"),
        "the old answer is still shown: {page}"
    );
    assert_eq!(page.matches("a question").count(), 1, "{page}");
    common::ledger::assert_books(&w.t.app.quota, &user).await;
}
