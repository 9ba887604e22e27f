//! A bot served as `gptbot run` serves it (Telegram fake with its flood limits on), with
//! its operations listener, and small HTTP helpers for `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use gptbot::app::Running;
use serde_json::Value;

use super::telegram::FakeTelegram;
use super::{Options, TestApp, spawn_app_with, stopper};

pub struct Ops {
    pub t: TestApp,
    pub tg: FakeTelegram,
    pub running: Running,
    pub base: String,
    _stop: tokio_util::sync::DropGuard,
}

/// The bot with Telegram (polling, flood limits on), served as `gptbot run` serves it.
pub async fn spawn(options: Options) -> Ops {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let t = spawn_app_with(options.telegram(&tg)).await;
    let (stop, rx) = stopper();
    let running = t.app.start(rx).await.expect("the bot starts");
    let base = format!("http://{}", running.ops_addr.expect("http.listen is set"));
    Ops {
        t,
        tg,
        running,
        base,
        _stop: stop,
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Polls `/readyz` until it answers `status`; returns its body.
pub async fn readyz_becomes(base: &str, status: u16, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (got, body) = get(&format!("{base}/readyz")).await;
        if got == status {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {got} (wanted {status}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
