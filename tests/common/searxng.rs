//! A fake SearXNG instance on 127.0.0.1: its JSON search API (`GET /search?q=…&format=json`)
//! as the real one answers it, the queries it was asked, and a switch to fail.

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

impl FakeSearxng {
    pub async fn start() -> FakeSearxng {
        let state = Arc::new(Mutex::new(SearxState::default()));
        let app = axum::Router::new()
            .route("/search", axum::routing::get(search))
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
