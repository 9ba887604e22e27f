//! The web front booted as `gptbot run` boots it (`web.listen` on port 0), and a small
//! HTTP client that keeps the session cookie the way a browser does, so tests can look
//! at every `Set-Cookie` it receives.
#![allow(dead_code)]

use std::net::SocketAddr;

use gptbot::accounts::WebAccounts;
use gptbot::core::event::{Platform, UserId};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use secrecy::SecretString;

use super::{Options, TestApp, spawn_app_with, stopper};

pub const PASSWORD: &str = "correct horse battery";

pub struct Web {
    pub t: TestApp,
    pub addr: SocketAddr,
    _running: gptbot::app::Running,
    _stop: tokio_util::sync::DropGuard,
}

pub fn web_user(name: &str) -> UserId {
    UserId::new(Platform::Web, name)
}

pub async fn spawn_web(options: Options) -> Web {
    let t = spawn_app_with(options.with("GPTBOT__WEB__LISTEN", "127.0.0.1:0")).await;
    let (stop, rx) = stopper();
    let running = t.app.start(rx).await.expect("the web front starts");
    let addr = running.web_addr.expect("web.listen is set");
    Web {
        t,
        addr,
        _running: running,
        _stop: stop,
    }
}

impl Web {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn add_user(&self, name: &str) {
        WebAccounts::new(self.t.app.db.clone())
            .add(name, &SecretString::from(PASSWORD))
            .await
            .expect("the user is added");
    }

    pub fn client(&self) -> Client {
        client_at(self.addr)
    }

    /// A second replica of this front (same database, Redis and settings), serving
    /// while the returned value lives.
    pub async fn replica(&self) -> Replica {
        let app = self.t.replica().await;
        let (stop, rx) = stopper();
        let running = app.start(rx).await.expect("the replica's web front starts");
        let addr = running.web_addr.expect("web.listen is set");
        Replica {
            addr,
            _app: app,
            _running: running,
            _stop: stop,
        }
    }
}

pub struct Replica {
    pub addr: SocketAddr,
    _app: gptbot::app::App,
    _running: gptbot::app::Running,
    _stop: tokio_util::sync::DropGuard,
}

/// A browser-like client of the front at `addr`.
pub fn client_at(addr: SocketAddr) -> Client {
    Client {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: format!("http://{addr}"),
        cookie: None,
        device: None,
        set_cookies: Vec::new(),
    }
}

/// A browser-like client: one cookie jar slot for the session cookie.
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The session cookie's value, as the browser would send it.
    pub cookie: Option<String>,
    /// The device cookie (set at a login), as the browser would send it to /login.
    pub device: Option<String>,
    /// Every `Set-Cookie` received, in order.
    pub set_cookies: Vec<String>,
}

impl Client {
    fn remember(&mut self, response: &Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap().to_string();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if name == "gptbot_session" {
                let expired = text.contains("Max-Age=0");
                self.cookie = (!expired && !value.is_empty()).then(|| value.to_string());
            }
            if name == "gptbot_device" {
                self.device = Some(value.to_string());
            }
            self.set_cookies.push(text);
        }
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut cookies = Vec::new();
        if let Some(c) = &self.cookie {
            cookies.push(format!("gptbot_session={c}"));
        }
        if let Some(d) = &self.device {
            cookies.push(format!("gptbot_device={d}"));
        }
        if cookies.is_empty() {
            request
        } else {
            request.header(COOKIE, cookies.join("; "))
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let request = self.with_cookie(self.http.get(format!("{}{path}", self.base)));
        let response = request.send().await.unwrap();
        self.remember(&response);
        response
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let request = self.with_cookie(self.http.post(format!("{}{path}", self.base)));
        let response = request.form(fields).send().await.unwrap();
        self.remember(&response);
        response
    }

    /// Logs in through a proxy that says the visitor is `forwarded_for`.
    pub async fn login_forwarded(
        &mut self,
        user: &str,
        password: &str,
        forwarded_for: &str,
    ) -> Response {
        let request = self.with_cookie(self.http.post(format!("{}/login", self.base)));
        let response = request
            .header("x-forwarded-for", forwarded_for)
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .unwrap();
        self.remember(&response);
        response
    }

    /// Logs in; returns the response (a 303 to `/` when it worked).
    pub async fn login(&mut self, user: &str, password: &str) -> Response {
        self.post_form("/login", &[("username", user), ("password", password)])
            .await
    }

    /// Logs in and returns the chat page's CSRF token.
    pub async fn logged_in(&mut self, user: &str) -> String {
        let response = self.login(user, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/");
        let page = self.get("/").await.text().await.unwrap();
        csrf_of(&page)
    }

    /// Sends a message from the chat box; the status and the whole event stream.
    pub async fn send(&mut self, text: &str, csrf: Option<&str>) -> (StatusCode, String) {
        let mut request = self
            .with_cookie(self.http.post(format!("{}/api/send", self.base)))
            .json(&serde_json::json!({ "text": text }));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }
}

/// The CSRF token a page carries (its `<meta name="csrf-token">`).
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf-token" content=""#)
        .unwrap_or_else(|| panic!("no CSRF token in the page: {page}"));
    let rest = &page[at + r#"name="csrf-token" content=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The events of a stream: (event name, JSON data).
pub fn events(stream: &str) -> Vec<(String, serde_json::Value)> {
    stream
        .split("\n\n")
        .filter_map(|frame| {
            let mut name = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            Some((name?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

/// The final HTML of each message of a stream, in order.
pub fn final_messages(stream: &str) -> Vec<String> {
    let mut last: Vec<(String, String)> = Vec::new();
    for (name, data) in events(stream) {
        if name != "message" {
            continue;
        }
        let id = data["id"].as_str().unwrap().to_string();
        let html = data["html"].as_str().unwrap().to_string();
        match last.iter_mut().find(|(i, _)| *i == id) {
            Some(entry) => entry.1 = html,
            None => last.push((id, html)),
        }
    }
    last.into_iter().map(|(_, html)| html).collect()
}
