//! A fake SearXNG instance on 127.0.0.1: its JSON search API (`GET /search?q=…&format=json`)
//! as the real one answers it, the queries it was asked, and a switch to fail. It also
//! plays Brave Search (`GET /brave`, key in `X-Subscription-Token`) and Tavily (`POST
//! /tavily`, key as a bearer token), each answering in its own shape, 401 without the
//! key (`brave-key`, `tavily-key`).

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Default)]
struct SearxState {
    queries: Vec<String>,
    failing: bool,
}

pub struct FakeSearxng {
    state: Arc<Mutex<SearxState>>,
    port: u16,
}

async fn search(
    State(state): State<Arc<Mutex<SearxState>>>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let q = params.get("q").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.queries.push(q.clone());
    if s.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "engine failure").into_response();
    }
    if params.get("format").map(String::as_str) != Some("json") {
        return (StatusCode::FORBIDDEN, "format not allowed").into_response();
    }
    axum::Json(json!({
        "query": q,
        "number_of_results": 2,
        "results": [
            {"url": "https://www.rust-lang.org/", "title": "Rust Programming Language",
             "content": format!("A language empowering everyone (about {q})."), "engine": "duckduckgo", "score": 1.0},
            {"url": "https://blog.rust-lang.org/", "title": "Rust Blog",
             "content": "Announcements from the Rust project.", "engine": "bing", "score": 0.5}
        ],
        "answers": [], "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []
    }))
    .into_response()
}

async fn brave(
    State(state): State<Arc<Mutex<SearxState>>>,
    headers: axum::http::HeaderMap,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if headers
        .get("x-subscription-token")
        .and_then(|v| v.to_str().ok())
        != Some("brave-key")
    {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    let q = params.get("q").cloned().unwrap_or_default();
    state.lock().unwrap().queries.push(format!("brave:{q}"));
    axum::Json(json!({
        "type": "search",
        "query": {"original": q},
        "web": {"type": "search", "results": [
            {"title": "Brave result", "url": "https://brave.example/", "description": format!("About {q}."), "type": "search_result"}
        ]}
    }))
    .into_response()
}

async fn tavily(
    State(state): State<Arc<Mutex<SearxState>>>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tavily-key") {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    let q = body["query"].as_str().unwrap_or_default().to_string();
    state.lock().unwrap().queries.push(format!("tavily:{q}"));
    axum::Json(json!({
        "query": q, "answer": null, "images": [], "response_time": 0.5,
        "results": [{"title": "Tavily result", "url": "https://tavily.example/", "content": format!("About {q}."), "score": 0.9}]
    }))
    .into_response()
}

impl FakeSearxng {
    pub async fn start() -> FakeSearxng {
        let state = Arc::new(Mutex::new(SearxState::default()));
        let app = axum::Router::new()
            .route("/search", axum::routing::get(search))
            .route("/brave", axum::routing::get(brave))
            .route("/tavily", axum::routing::post(tavily))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeSearxng { state, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn queries(&self) -> Vec<String> {
        self.state.lock().unwrap().queries.clone()
    }

    /// Every search answers 500 from now on.
    pub fn fail(&self) {
        self.state.lock().unwrap().failing = true;
    }
}
