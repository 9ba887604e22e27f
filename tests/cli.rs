//! The `gptbot` binary, run as a user would: `chat` over stdin against the fake OpenAI
//! server and a real Redis, the quota and config commands, and start-up errors.

mod common;

use common::{FakeOpenAi, RedisServer, gptbot, test_env};

#[tokio::test]
async fn chat_over_stdin_streams_answers_and_keeps_history_in_redis() {
    let openai = FakeOpenAi::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, Some(&redis), &dir, &[]);

    let run = gptbot(&["chat"], &env, "hello terminal\n\nsecond line\n/quota\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("Echo: hello terminal\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Echo: second line\n"), "{}", run.stdout);
    assert!(run.stdout.contains("remaining"), "{}", run.stdout);
    assert!(!run.stderr.contains("sk-test-secret-key"));
    let requests = openai.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["messages"].as_array().unwrap().len(), 4);

    // The history is in Redis under console:<os user>, so a new process continues it.
    let run = gptbot(&["chat"], &env, "third\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        openai.requests()[2]["messages"].as_array().unwrap().len(),
        6
    );

    // And its usage was charged to console:tester.
    let run = gptbot(&["quota", "show", "console:tester"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("console:tester: remaining "),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("used 0 "), "{}", run.stdout);
}

#[tokio::test]
async fn quota_grant_show_and_migrate() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, None, &dir, &[]);

    let run = gptbot(&["migrate"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("database migrated"));

    let run = gptbot(&["quota", "grant", "telegram:5", "500"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("remaining 20500"), "{}", run.stdout);
    let run = gptbot(&["quota", "grant", "telegram:5", "-20400"], &env, "").await;
    assert!(
        run.stdout
            .contains("remaining 100 used 0 reserved 0 granted 100"),
        "{}",
        run.stdout
    );
    let run = gptbot(&["quota", "grant", "telegram:5", "-101"], &env, "").await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("only 100 remain"), "{}", run.stderr);
    let run = gptbot(&["quota", "show", "telegram:5"], &env, "").await;
    assert!(run.stdout.contains("remaining 100"), "{}", run.stdout);

    let run = gptbot(&["quota", "set", "telegram:5", "unlimited"], &env, "").await;
    assert!(run.stdout.contains("(unlimited)"), "{}", run.stdout);
    let run = gptbot(&["quota", "set", "telegram:5", "250"], &env, "").await;
    assert!(
        run.stdout.contains("remaining 250") && !run.stdout.contains("unlimited"),
        "{}",
        run.stdout
    );
    let run = gptbot(&["quota", "refill", "telegram:5", "9000"], &env, "").await;
    assert!(run.stdout.contains("(own refill 9000)"), "{}", run.stdout);
    let run = gptbot(&["quota", "set", "telegram:5", "lots"], &env, "").await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`lots`"), "{}", run.stderr);

    // The ledger tells where the tokens went: the grant, then each adjustment.
    let run = gptbot(&["quota", "history", "telegram:5"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let kinds: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["grant", "adjust", "adjust", "adjust"],
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .trim_end()
            .ends_with("250"),
        "{}",
        run.stdout
    );

    let run = gptbot(&["quota", "show", "nobody"], &env, "").await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("platform:user"), "{}", run.stderr);
}

/// An operator lists open holds and releases one by hand (a process killed mid-answer
/// left it): the tokens are back at once, and a second release says there is none.
#[tokio::test]
async fn quota_holds_lists_open_holds_and_release_returns_one() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, None, &dir, &[]);
    let db = gptbot::db::Db::connect(&env["DATABASE_URL"], 2)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let quota = gptbot::quota::QuotaService::new(db, gptbot::quota::QuotaPlan::fixed(1000));
    let u = gptbot::core::event::UserId::parse("telegram:77").unwrap();
    let held = quota.reserve(&u, 300).await.unwrap();
    let id = held.id();
    std::mem::forget(held); // its process is gone

    let run = gptbot(&["quota", "holds"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("telegram:77"))
        .unwrap_or_else(|| panic!("hold not listed: {}", run.stdout));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[2]),
        (id.to_string().as_str(), "300"),
        "{line}"
    );

    let run = gptbot(&["quota", "release", &id.to_string()], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let b = quota.balance(&u).await.unwrap();
    assert_eq!((b.remaining, b.reserved), (1000, 0));
    common::ledger::assert_books(&quota, &u).await;
    let run = gptbot(&["quota", "release", &id.to_string()], &env, "").await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no open hold"), "{}", run.stderr);
    let run = gptbot(&["quota", "holds"], &env, "").await;
    assert!(!run.stdout.contains("telegram:77"), "{}", run.stdout);
}

/// `gptbot telegram webhook info|set|delete` against the fake Bot API; no secret shows.
#[tokio::test]
async fn telegram_webhook_info_set_and_delete_for_operators() {
    let openai = FakeOpenAi::start().await;
    let tg = common::telegram::FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(
        &openai,
        None,
        &dir,
        &[
            ("TELEGRAM_BOT_TOKEN".into(), common::telegram::TOKEN.into()),
            ("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url()),
            (
                "GPTBOT__TELEGRAM__WEBHOOK_URL".into(),
                "https://bot.example.test/hook".into(),
            ),
            (
                "GPTBOT__TELEGRAM__WEBHOOK_SECRET".into(),
                "cli-secret_42".into(),
            ),
        ],
    );
    let run = gptbot(&["telegram", "webhook", "info"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("url: (none"), "{}", run.stdout);

    let run = gptbot(&["telegram", "webhook", "set"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let set = tg.calls_of("setWebhook");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].body["url"], "https://bot.example.test/hook");
    assert_eq!(set[0].body["secret_token"], "cli-secret_42");

    let run = gptbot(&["telegram", "webhook", "info"], &env, "").await;
    assert!(
        run.stdout.contains("url: https://bot.example.test/hook"),
        "{}",
        run.stdout
    );
    let run = gptbot(
        &["telegram", "webhook", "delete", "--drop-pending-updates"],
        &env,
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let deleted = tg.calls_of("deleteWebhook");
    assert_eq!(deleted[0].body["drop_pending_updates"], true);
    let run = gptbot(&["telegram", "webhook", "info"], &env, "").await;
    assert!(run.stdout.contains("url: (none"), "{}", run.stdout);
    assert!(!run.stdout.contains("cli-secret_42") && !run.stderr.contains(common::telegram::TOKEN));
}

#[tokio::test]
async fn bad_configuration_fails_at_start_with_the_key_and_exit_code_2() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = test_env(&openai, None, &dir, &[]);
    let cases = [
        ("GPTBOT__MODEL__MAX_TOKENS", "many", "max_tokens"),
        ("GPTBOT__SESSION__TTL", "soon", "ttl"),
        ("OPENAI_BASE_URL", "ftp://example", "openai.base_url"),
        ("DATABASE_URL", "mysql://x", "database.url"),
        ("GPTBOT__LOG__FORMAT", "xml", "format"),
        // Parsed once at load time, with bounds: no panic on an absurd value.
        ("GPTBOT__SESSION__TTL", "1e20", "session.ttl"),
        ("GPTBOT__TELEGRAM__LISTEN", "everywhere", "telegram.listen"),
        ("GPTBOT__DISCORD__SHARDS", "2-1/4", "discord.shards"),
        ("GPTBOT__WEB__SESSION_TTL", "0s", "web.session_ttl"),
        ("GPTBOT__WEB__LISTEN", "somewhere", "web.listen"),
        (
            "GPTBOT__WEB__TRUSTED_PROXIES",
            "127.0.0.1,proxy.local",
            "web.trusted_proxies",
        ),
        ("GPTBOT_RUNTIME", "threads", "runtime.flavor"),
    ];
    for (var, value, key) in cases {
        let mut env = base.clone();
        env.insert(var.into(), value.into());
        let run = gptbot(&["chat"], &env, "hello\n").await;
        assert_eq!(run.code, 2, "{var}={value}: {}", run.stderr);
        assert!(
            !run.stderr.contains("panicked"),
            "{var}={value}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(key), "{var}={value}: {}", run.stderr);
    }
    assert_eq!(openai.request_count(), 0);

    // The other scheduler answers too (every other test runs the default, one thread).
    let mut env = base.clone();
    env.insert("GPTBOT_RUNTIME".into(), "multi-thread".into());
    let run = gptbot(&["chat"], &env, "hello\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Echo: hello"), "{}", run.stdout);
    assert_eq!(openai.request_count(), 1);

    let run = gptbot(&["--config", "/nonexistent/gptbot.toml", "chat"], &base, "").await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("/nonexistent/gptbot.toml"),
        "{}",
        run.stderr
    );

    let file = dir.path().join("broken.toml");
    std::fs::write(&file, "[session]\nttl = \"never\"\n").unwrap();
    let run = gptbot(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &base,
        "",
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("session.ttl"), "{}", run.stderr);
}

#[tokio::test]
async fn a_config_file_layers_over_defaults_and_config_check_redacts_secrets() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    env.insert("TELEGRAM_BOT_TOKEN".into(), "123456:telegram-secret".into());
    env.insert("REDIS_URL".into(), "redis://:redispw@127.0.0.1:1".into());
    let file = dir.path().join("mine.toml");
    std::fs::write(
        &file,
        "[model]\nname = \"llama3.1:8b\"\ntemperature = 0.2\n",
    )
    .unwrap();

    let run = gptbot(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &env,
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("name = \"llama3.1:8b\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("temperature = 0.2"), "{}", run.stdout);
    for secret in ["sk-test-secret-key", "telegram-secret", "redispw"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} leaked"
        );
    }
    assert!(run.stdout.contains("[redacted]"));
}

#[tokio::test]
async fn run_without_any_platform_names_the_settings_to_set() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, None, &dir, &[]);
    let run = gptbot(&["run"], &env, "").await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("TELEGRAM_BOT_TOKEN"), "{}", run.stderr);
    assert!(run.stderr.contains("DISCORD_TOKEN"), "{}", run.stderr);
}

#[tokio::test]
async fn json_logs_carry_one_span_per_message_with_tokens_and_latency() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    env.insert("RUST_LOG".into(), "info".into());
    openai.script([common::Behavior::text(&["fine"], (21, 4))]);
    let run = gptbot(&["--log-format", "json", "chat"], &env, "how are you\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let handled: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "message handled")
        .collect();
    assert_eq!(handled.len(), 1, "{}", run.stderr);
    let span = &handled[0]["span"];
    assert_eq!(span["platform"], "console");
    assert_eq!(span["user"], "tester");
    assert_eq!(span["used"], 25);
    assert!(span["reserved"].as_i64().unwrap() > 100);
    assert!(span["latency_ms"].is_number());
    assert!(!run.stderr.contains("sk-test-secret-key"));
}

#[tokio::test]
async fn access_and_stats_from_the_command_line() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    env.insert("GPTBOT__ACCESS__MODE".into(), "allowlist".into());

    let run = gptbot(&["chat"], &env, "hello?\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("this bot is private"), "{}", run.stdout);
    assert_eq!(openai.request_count(), 0);

    let run = gptbot(&["access", "allow", "console:tester"], &env, "").await;
    assert_eq!(
        run.stdout.trim(),
        "console:tester allowed",
        "{}",
        run.stderr
    );
    let run = gptbot(&["access", "deny", "group:telegram:-100123"], &env, "").await;
    assert_eq!(
        run.stdout.trim(),
        "group:telegram:-100123 denied",
        "{}",
        run.stderr
    );
    let run = gptbot(&["access", "allow", "nonsense"], &env, "").await;
    assert_eq!(run.code, 2);
    let run = gptbot(&["access", "list"], &env, "").await;
    assert_eq!(
        run.stdout,
        "console:tester allowed (by cli)\ngroup:telegram:-100123 denied (by cli)\n"
    );

    let run = gptbot(&["chat"], &env, "hello now\n").await;
    assert!(run.stdout.contains("Echo: hello now"), "{}", run.stdout);
    let run = gptbot(&["stats"], &env, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("users 1\n"), "{}", run.stdout);
    assert!(run.stdout.contains("requests_today 1\n"), "{}", run.stdout);
}

#[tokio::test]
async fn web_users_are_managed_from_the_command_line_and_passwords_never_echoed() {
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(&openai, None, &dir, &[]);
    let secret = "a long enough secret";

    let run = gptbot(
        &["web", "user", "add", "Ann", "--password-stdin"],
        &env,
        &format!("{secret}\n"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("web user ann added (quota user web:ann)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));

    let again = gptbot(
        &["web", "user", "add", "ann", "--password-stdin"],
        &env,
        "another one here\n",
    )
    .await;
    assert_eq!(
        again.code, 2,
        "a duplicate is a usage error: {}",
        again.stderr
    );
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let short = gptbot(
        &["web", "user", "add", "bob", "--password-stdin"],
        &env,
        "short\n",
    )
    .await;
    assert_eq!(short.code, 2);
    assert!(
        short.stderr.contains("at least 8 characters"),
        "{}",
        short.stderr
    );
    let no_tty = gptbot(&["web", "user", "add", "bob"], &env, "").await;
    assert_eq!(no_tty.code, 2);
    assert!(
        no_tty.stderr.contains("--password-stdin"),
        "{}",
        no_tty.stderr
    );

    // The hash, not the password, is stored, and it is argon2id.
    // (the main file and, if not yet checkpointed, its write-ahead log)
    let mut db = std::fs::read(dir.path().join("quota.db")).unwrap();
    db.extend(std::fs::read(dir.path().join("quota.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(!text.contains(secret));
    assert!(text.contains("$argon2id$"));

    let list = gptbot(&["web", "user", "list"], &env, "").await;
    assert!(list.stdout.starts_with("ann (since "), "{}", list.stdout);
    let passwd = gptbot(
        &["web", "user", "passwd", "ann", "--password-stdin"],
        &env,
        "a new secret value\n",
    )
    .await;
    assert_eq!(passwd.code, 0, "{}", passwd.stderr);
    let gone = gptbot(&["web", "user", "remove", "ann"], &env, "").await;
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    let missing = gptbot(&["web", "user", "remove", "ann"], &env, "").await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no web user named ann"),
        "{}",
        missing.stderr
    );
    // The name stays retired (sign-up refuses it) until an operator frees it.
    assert!(
        gone.stdout.contains("sign-up keeps refusing the name"),
        "{}",
        gone.stdout
    );
    let settings = gptbot::config::Settings::load(None, &env).unwrap();
    let accounts =
        gptbot::accounts::WebAccounts::new(gptbot::app::open_db(&settings).await.unwrap());
    assert!(accounts.retired("ann").await.unwrap());
    let forgot = gptbot(&["web", "user", "remove", "ann", "--forget"], &env, "").await;
    assert_eq!(forgot.code, 0, "{}", forgot.stderr);
    assert!(
        forgot.stdout.contains("the name is free"),
        "{}",
        forgot.stdout
    );
    assert!(!accounts.retired("ann").await.unwrap());
}
