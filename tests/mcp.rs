//! MCP servers' tools, end to end on Telegram and Discord: a real MCP server from PyPI
//! (`mcp-server-time`, over stdio, installed by scripts/test.sh) started and supervised by
//! the bot, its tool called by the model and charged at the server's price; and a test
//! MCP server (tests/fixtures/mcp_slow.py) killed in the middle of a call — the model gets
//! an error, the user an answer, the call is refunded, and the server is started again.

mod common;

use std::time::Duration;

use common::chats::PrivateChat;
use common::*;

fn with_server(toml: &str) -> Options {
    Options::default()
        .with("GPTBOT__MODEL__TOOLS", "true")
        .with("GPTBOT__TOOLS__PRICE_PER_CALL", "100")
        .file(toml)
}

/// Waits until the bot offers `tool` (the server is started after the bot).
async fn offered(t: &TestApp, tool: &str) {
    common::eventually(
        20,
        &format!("{tool} on offer"),
        || {
            t.app
                .conversation
                .offered_tools()
                .iter()
                .any(|o| o.spec.name == tool)
        },
        || format!("{:?}", t.app.conversation.offered_tools()),
    )
    .await;
}

async fn a_real_mcp_servers_tool_is_called_and_charged_at_its_price<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(with_server(
        "[[tools.mcp]]\nname = \"time\"\ncommand = [\"mcp-server-time\"]\nprice_per_call = 50\n",
    ))
    .await;
    offered(&t, "time__get_current_time").await;
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![(
                "time__get_current_time".into(),
                "{\"timezone\": \"Europe/Berlin\"}".into(),
            )],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["It is late in Berlin.".into()],
            delay: Duration::from_millis(600),
            usage: Some((90, 8)),
        },
    ]);
    chat.say("what time is it in Berlin?");
    chat.wait_any("the call shown while it runs", &|t| {
        t == "🔧 time.get_current_time"
    })
    .await;
    chat.wait_last("It is late in Berlin.").await;
    let requests = t.openai.requests();
    let tools = requests[0]["tools"].to_string();
    assert!(tools.contains("time__get_current_time"), "{tools}");
    let result = requests[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(result["role"], "tool");
    let text = result["content"].as_str().unwrap();
    assert!(
        text.contains("\"timezone\": \"Europe/Berlin\"") && text.contains("datetime"),
        "the real server's answer: {text}"
    );
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    assert_eq!(balance.used, 42 + 50 + 98);
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert!(
        entries.iter().any(|e| e.kind == "settle"
            && e.note.as_deref() == Some("tool:time__get_current_time")
            && e.d_used == 50),
        "{entries:#?}"
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

async fn an_mcp_server_killed_mid_call_is_refunded_and_started_again<P: PrivateChat>() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_slow.py");
    let toml = format!(
        "[[tools.mcp]]\nname = \"slow\"\ncommand = [\"env\", \"MCP_PID_FILE={}\", \"python3\", \"{script}\"]\n",
        pid_file.display()
    );
    let (chat, t, _stop) = P::start(with_server(&toml)).await;
    offered(&t, "slow__sleep").await;
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![("slow__sleep".into(), "{\"seconds\": 30}".into())],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["The tool broke.".into()],
            delay: Duration::ZERO,
            usage: Some((90, 8)),
        },
    ]);
    chat.say("sleep");
    chat.wait_any("the call running", &|t| t == "🔧 slow.sleep")
        .await;
    let first = std::fs::read_to_string(&pid_file).unwrap();
    // The server dies in the middle of the call.
    unsafe { libc::kill(first.trim().parse().unwrap(), libc::SIGKILL) };
    chat.wait_last("The tool broke.").await;
    let result = t.openai.last_message_of(1);
    assert!(result.starts_with("Error:"), "{result}");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.used, 42 + 98, "the broken call is not charged");
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.kind == "refund" && e.note.as_deref() == Some("tool:slow__sleep")),
        "{entries:#?}"
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    // Started again, with backoff: a new process, its tools back on offer.
    common::eventually(
        10,
        "a new server process",
        || std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid != first),
        || "the same pid".to_string(),
    )
    .await;
    offered(&t, "slow__echo").await;
}

/// A tool that answers too late (past `tools.timeout`) and one that answers with an
/// error: the model gets an error result for each and the user an answer; neither call
/// is charged, and the server keeps serving.
async fn a_slow_or_failing_mcp_tool_gives_the_model_an_error_and_costs_nothing<P: PrivateChat>() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_slow.py");
    let toml = format!("[[tools.mcp]]\nname = \"slow\"\ncommand = [\"python3\", \"{script}\"]\n");
    let (chat, t, _stop) = P::start(with_server(&toml).with("GPTBOT__TOOLS__TIMEOUT", "1s")).await;
    offered(&t, "slow__sleep").await;
    // Two rounds (the test server answers one call at a time).
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![("slow__fail".into(), "{}".into())],
            usage: Some((30, 12)),
        },
        Behavior::ToolCalls {
            calls: vec![("slow__sleep".into(), "{\"seconds\": 10}".into())],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["Both failed.".into()],
            delay: Duration::ZERO,
            usage: Some((90, 8)),
        },
    ]);
    chat.say("try");
    chat.wait_last("Both failed.").await;
    let requests = t.openai.requests();
    let result = |i: usize| {
        requests[i]["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(result(1), "Error: the tool failed: this tool always fails");
    assert_eq!(result(2), "Error: the tool did not answer within 1s");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    assert_eq!(balance.used, 42 + 42 + 98, "failed calls are not charged");
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    assert!(
        t.app
            .conversation
            .offered_tools()
            .iter()
            .any(|o| o.spec.name == "slow__echo")
    );
}

/// A server reached over Streamable HTTP (the official Python SDK's, which refuses
/// requests without the configured `Authorization` header): its tool is offered and
/// called like a started server's, and the header's secret never appears in the log.
async fn an_mcp_server_over_streamable_http_is_reached_with_its_headers<P: PrivateChat>() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_http.py");
    let mut server = tokio::process::Command::new("python3")
        .args([script, &port.to_string(), "mcp-secret-token"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts the test MCP server");
    let toml = format!(
        "[[tools.mcp]]\nname = \"remote\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ Authorization = \"Bearer mcp-secret-token\" }}\n"
    );
    let (chat, t, _stop) = P::start(with_server(&toml)).await;
    offered(&t, "remote__shout").await;
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![("remote__shout".into(), "{\"text\": \"hello\"}".into())],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["It said HELLO.".into()],
            delay: Duration::ZERO,
            usage: Some((90, 8)),
        },
    ]);
    chat.say("shout hello");
    chat.wait_last("It said HELLO.").await;
    let result = t.openai.last_message_of(1);
    assert!(result.contains("HELLO"), "{result}");
    let shown = format!("{:?}", t.app.settings);
    assert!(
        !shown.contains("mcp-secret-token"),
        "the header's secret is shown: {shown}"
    );
    common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    let _ = server.kill().await;
}

/// A server that answers a call with a line that is not JSON-RPC: the model gets an
/// error result (at the latest when the call times out), the user an answer, nothing is
/// charged for the call, and the bot keeps serving the server's tools (started again if
/// the broken line ended the connection).
async fn an_mcp_server_answering_garbage_gives_the_model_an_error<P: PrivateChat>() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_slow.py");
    let toml = format!("[[tools.mcp]]\nname = \"slow\"\ncommand = [\"python3\", \"{script}\"]\n");
    let (chat, t, _stop) = P::start(with_server(&toml).with("GPTBOT__TOOLS__TIMEOUT", "2s")).await;
    offered(&t, "slow__garbage").await;
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![("slow__garbage".into(), "{}".into())],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["That tool is broken.".into()],
            delay: Duration::ZERO,
            usage: Some((90, 8)),
        },
    ]);
    chat.say("garbage");
    chat.wait_last("That tool is broken.").await;
    let result = t.openai.last_message_of(1);
    assert!(result.starts_with("Error:"), "{result}");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.used, 42 + 98, "a broken call is not charged");
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    offered(&t, "slow__echo").await;
}

/// A server whose tools change says so (`notifications/tools/list_changed`): the new
/// tool is on offer for the next question without a restart.
async fn tools_an_mcp_server_adds_are_offered_once_it_says_so<P: PrivateChat>() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_slow.py");
    let toml = format!(
        "[[tools.mcp]]\nname = \"slow\"\ncommand = [\"python3\", \"{script}\"]\nprices = {{ grow = 7 }}\n"
    );
    let (chat, t, _stop) = P::start(with_server(&toml)).await;
    offered(&t, "slow__grow").await;
    let price = |name: &str| {
        t.app
            .conversation
            .offered_tools()
            .iter()
            .find(|o| o.spec.name == name)
            .map(|o| o.price)
    };
    assert_eq!(price("slow__grow"), Some(7), "a tool's own price");
    assert_eq!(price("slow__echo"), Some(100), "the default price");
    assert!(
        !t.app
            .conversation
            .offered_tools()
            .iter()
            .any(|o| o.spec.name == "slow__extra")
    );
    t.openai.script([
        Behavior::ToolCalls {
            calls: vec![("slow__grow".into(), "{}".into())],
            usage: Some((30, 12)),
        },
        Behavior::Stream {
            pieces: vec!["Grown.".into()],
            delay: Duration::ZERO,
            usage: Some((90, 8)),
        },
    ]);
    chat.say("grow");
    chat.wait_last("Grown.").await;
    offered(&t, "slow__extra").await;
    chat.say("and now?");
    chat.wait_last("Echo: and now?").await;
    let tools = t.openai.requests()[2]["tools"].to_string();
    assert!(tools.contains("slow__extra"), "{tools}");
    common::ledger::settled(&t.app.quota, &chat.user(), 4).await;
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert!(
        entries.iter().any(|e| e.kind == "settle"
            && e.note.as_deref() == Some("tool:slow__grow")
            && e.d_used == 7),
        "{entries:#?}"
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// `gptbot tools` (the real binary) lists what a model may call with a configuration,
/// with prices, starting the MCP servers as `gptbot run` would; a server that does not
/// connect is named and the exit code is 1.
#[tokio::test]
async fn gptbot_tools_lists_the_tools_and_names_servers_that_do_not_connect() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gptbot.toml");
    let run_with = |toml: &str, wait: &str, extra: &[&str]| {
        std::fs::write(&config, toml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gptbot"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "tools",
                "--wait",
                wait,
            ])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("t.db").display()),
            )
            .output()
            .expect("gptbot runs")
    };
    let run = |toml: &str, wait: &str| run_with(toml, wait, &[]);
    let ok = run(
        "[tools.fetch_url]\nenabled = true\n[[tools.mcp]]\nname = \"time\"\ncommand = [\"mcp-server-time\"]\nprice_per_call = 50\n",
        "20s",
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("time__get_current_time") && l.contains(" 50 ")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("fetch_url") && l.contains(" 100 ")),
        "{out}"
    );
    // One call, its result printed as the model would get it.
    let called = run_with(
        "[[tools.mcp]]\nname = \"time\"\ncommand = [\"mcp-server-time\"]\n",
        "20s",
        &[
            "--call",
            "time__get_current_time",
            "--args",
            r#"{"timezone": "Asia/Tokyo"}"#,
        ],
    );
    let out = String::from_utf8_lossy(&called.stdout);
    assert!(called.status.success(), "{out}");
    assert!(
        out.contains("\"timezone\": \"Asia/Tokyo\"") && out.contains("+09:00"),
        "{out}"
    );
    let down = run(
        "[[tools.mcp]]\nname = \"broken\"\ncommand = [\"/nonexistent/mcp-server\"]\n",
        "2s",
    );
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("MCP servers not connected: broken"), "{err}");
}

on_both!(
    a_real_mcp_servers_tool_is_called_and_charged_at_its_price,
    an_mcp_server_killed_mid_call_is_refunded_and_started_again,
    tools_an_mcp_server_adds_are_offered_once_it_says_so,
    a_slow_or_failing_mcp_tool_gives_the_model_an_error_and_costs_nothing,
    an_mcp_server_over_streamable_http_is_reached_with_its_headers,
    an_mcp_server_answering_garbage_gives_the_model_an_error,
);

/// The official MCP conformance suite (`@modelcontextprotocol/conformance` from npm,
/// run on Node.js 22 by `scripts/mcp-conformance.sh`) against the bot's MCP client, as
/// `gptbot tools` drives it: the handshake, a tool call, and a tool call whose stream
/// the server closes and the client resumes.
#[tokio::test]
async fn the_mcp_conformance_suites_client_scenarios_pass() {
    let out = tokio::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/mcp-conformance.sh"
        ))
        .env("GPTBOT_BIN", env!("CARGO_BIN_EXE_gptbot"))
        .output()
        .await
        .expect("bash runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in ["initialize", "tools_call", "sse-retry"] {
        assert!(
            report.lines().any(|l| l == format!("pass  {scenario}")),
            "{report}"
        );
    }
}
