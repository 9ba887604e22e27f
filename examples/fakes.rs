//! The tests' fake Telegram Bot API and fake model server, as a process: prints where they
//! listen as shell variables, then serves until killed. Used by `deploy/smoke.sh` to run
//! the container image against them.
//!
//!     cargo run --release --example fakes

#[path = "../tests/common/members.rs"]
#[allow(dead_code)]
mod members;
#[path = "../tests/common/multipart.rs"]
mod multipart;
#[path = "../tests/common/openai.rs"]
#[allow(dead_code)]
mod openai;
#[path = "../tests/common/stars.rs"]
#[allow(dead_code)]
mod stars;
#[path = "../tests/common/telegram.rs"]
mod telegram;

/// What the fake Bot API's helpers expect beside them (see tests/common/mod.rs).
#[allow(dead_code)]
async fn eventually(secs: u64, what: &str, done: impl Fn() -> bool, detail: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; {}",
            detail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let tg = telegram::FakeTelegram::start().await;
    let model = openai::FakeOpenAi::start().await;
    println!("FAKE_TELEGRAM_TOKEN='{}'", telegram::TOKEN);
    println!("FAKE_TELEGRAM_URL='{}'", tg.api_url());
    println!("FAKE_OPENAI_URL='{}'", model.base_url());
    std::future::pending::<()>().await;
}
