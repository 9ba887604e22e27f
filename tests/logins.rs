//! The web login and sign-up as an attacker uses them: floods of huge or new usernames,
//! others' failed guesses on an account whose owner then logs in, and sign-ups that try
//! to take over a configured or removed name. Through the real web front (axum, the
//! session store, argon2, SQLite).

mod common;

use std::time::Duration;

use common::web::{PASSWORD, spawn_web};
use common::*;
use reqwest::StatusCode;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// A raw POST of `body` bytes of form to /login: the status the front answers, read
/// even when it refuses before the body is sent whole.
async fn post_login(addr: std::net::SocketAddr, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The front may answer and close before reading all of it.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {:?}", &text[..text.len().min(200)]))
}

/// The reported defect: 2,000 logins with new 100 KB usernames grew the bot by 273 MiB
/// (every name kept by the per-user limiter), and a 2 MB username was answered 401. The
/// real binary serves the web front here, so its memory is the bot's alone.
#[tokio::test]
async fn a_flood_of_huge_usernames_is_refused_unread_and_memory_stays_flat() {
    gptbot::app::install_crypto_provider();
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = test_env(&openai, None, &dir, &[]);
    env.insert("GPTBOT__WEB__LISTEN".into(), format!("127.0.0.1:{port}"));
    let settings = gptbot::config::Settings::load(None, &env).unwrap();
    gptbot::accounts::WebAccounts::new(gptbot::app::open_db(&settings).await.unwrap())
        .add("ann", &secrecy::SecretString::from(PASSWORD))
        .await
        .unwrap();
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);
    let pid = child.id().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the web front never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Warmed up: one refused request first, so the figure is the flood's alone.
    assert_eq!(post_login(addr, &[b'x'; 8192]).await, 413);
    let before = rss(pid);
    for i in 0..2_000u32 {
        let mut body = format!("password=guess&username=u{i}").into_bytes();
        body.resize(100 * 1024, b'x');
        assert_eq!(post_login(addr, &body).await, 413, "attempt {i}");
    }
    let grown = rss(pid).saturating_sub(before);
    eprintln!(
        "RSS growth after 2,000 logins with 100 KB usernames: {} KiB",
        grown >> 10
    );
    assert!(grown < 8 << 20, "grew by {} MiB", grown >> 20);
    let mut huge = b"password=guess&username=".to_vec();
    huge.resize(2 << 20, b'y');
    assert_eq!(post_login(addr, &huge).await, 413);
    // None of it counted against anyone: the owner logs in at once.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}/login"))
        .form(&[("username", "ann"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    signal(&child, "TERM");
    assert!(exit_status(&mut child, 30).await.success());
}

#[tokio::test]
async fn a_name_no_account_can_have_is_neither_keyed_on_nor_echoed() {
    let w = spawn_web(Options::default()).await;
    let mut c = w.client();
    let name = "<script>alert(1)</script>";
    let refused = c.login(name, "guess").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let page = refused.text().await.unwrap();
    assert!(page.contains("Wrong username or password."), "{page}");
    assert!(!page.contains("alert(1)"), "the name was echoed: {page}");
}

/// Others' guesses lock an account out for browsers it does not know, never for the one
/// its owner logged in with (the per-account limit counts failures only).
#[tokio::test]
async fn others_failed_guesses_do_not_lock_the_owner_out_of_a_known_browser() {
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    let mut owner = w.client();
    owner.logged_in("ann").await;
    assert!(owner.device.is_some(), "a device cookie after the login");
    owner.cookie = None;

    let mut attacker = w.client();
    for _ in 0..5 {
        assert_eq!(
            attacker.login("ann", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attacker.login("ann", "guess").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A new browser with the right password is still refused: it could be a guesser.
    let mut stranger = w.client();
    let locked = stranger.login("ann", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("browser you used before"),
        "the owner is told the way in"
    );
    // The owner's browser gets in.
    let ok = owner.login("ann", PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert!(owner.cookie.is_some());
    // A device cookie of another account does not open this one.
    w.add_user("bob").await;
    let mut bobs = w.client();
    bobs.logged_in("bob").await;
    bobs.cookie = None;
    assert_eq!(
        bobs.login("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Sign-up must not hand a stranger a name that carries rights or a past: an admin or
/// an allowed user named in the configuration, a stored access rule, a removed account
/// (its balance and history stay with the name) — until an operator frees it.
#[tokio::test]
async fn sign_up_refuses_configured_rule_and_removed_names_until_forgotten() {
    let w = spawn_web(
        Options::default()
            .with("GPTBOT__WEB__SIGNUP", "true")
            .with("GPTBOT__ACCESS__ADMINS", "web:boss")
            .with("GPTBOT__ACCESS__USERS", "web:listed"),
    )
    .await;
    w.t.app
        .conversation
        .access()
        .set_rule("web:friend", true, "test")
        .await
        .unwrap();
    let sign_up = |name: &'static str| {
        let mut c = w.client();
        async move {
            let r = c
                .post_form("/signup", &[("username", name), ("password", PASSWORD)])
                .await;
            (r.status(), r.text().await.unwrap())
        }
    };
    for name in ["boss", "listed", "friend"] {
        let (status, page) = sign_up(name).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert!(
            page.contains(&format!("the name {name} is taken")),
            "{page}"
        );
    }

    // A removed account's name: refused, with its balance untouched, until forgotten.
    assert_eq!(sign_up("old").await.0, StatusCode::SEE_OTHER);
    let old = common::web::web_user("old");
    w.t.app.quota.grant(&old, 500).await.unwrap();
    let accounts = gptbot::accounts::WebAccounts::new(w.t.app.db.clone());
    accounts.remove("old", false).await.unwrap();
    let (status, page) = sign_up("old").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("the name old is taken"), "{page}");
    accounts.remove("old", true).await.unwrap();
    assert_eq!(sign_up("old").await.0, StatusCode::SEE_OTHER);
    common::ledger::assert_books(&w.t.app.quota, &old).await;
}

/// Two replicas of the web front sharing Redis count login attempts together: failed
/// guesses spread over both lock the account after five, and one address gets twenty
/// attempts a minute in all — not five and twenty on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_hold_across_replicas() {
    let w = spawn_web(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    w.add_user("ann").await;
    let other = w.replica().await;
    let mut fronts = [w.client(), common::web::client_at(other.addr)];
    for n in 0..5 {
        assert_eq!(
            fronts[n % 2].login("ann", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    for front in &mut fronts {
        let locked = front.login("ann", PASSWORD).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(locked.text().await.unwrap().contains("failed attempts"));
    }
    // The address: 7 attempts so far; 13 more of any name are taken, the next refused.
    for n in 0..13 {
        let status = fronts[n % 2]
            .login(&format!("nobody{n}"), "guess")
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {}", n + 8);
    }
    for front in &mut fronts {
        let refused = front.login("nobody", "guess").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.text().await.unwrap().contains("Too many attempts"));
    }
}
