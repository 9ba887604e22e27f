//! What reading one streamed answer costs, without the bot around it.
//!
//! `stream_floor serve ADDR PER_TOKEN_MS` answers every request with 100 SSE chunks in
//! OpenAI's shape, PER_TOKEN_MS apart; `stream_floor read URL N MODE [RUNTIME]` reads N
//! such answers one after another and prints its own CPU per answer. MODE: `std`
//! (blocking reads of the raw socket, no runtime), `lowat` (the same with `SO_RCVLOWAT` set
//! so the kernel wakes the reader only every `HOLD_MS`, default 10), `tcp` (tokio's socket), `bytes`
//! (reqwest's body), `openai` (reqwest's body, the bot's SSE reader and each chunk's
//! JSON, as the bot reads an answer; async-openai's stream until 2026-12-05). RUNTIME: `multi` (default) or `current`. Figures in BENCHMARKS.md.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CPU used by this process, and how often its threads went to sleep (context switches).
fn cpu() -> (Duration, i64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    (
        t(usage.ru_utime) + t(usage.ru_stime),
        usage.ru_nvcsw + usage.ru_nivcsw,
    )
}

async fn serve(addr: String, per_token: Duration) {
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    loop {
        let (mut socket, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let mut seen = Vec::new();
                // Read one request (headers + small JSON body).
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = |data: String| {
                    let event = format!("data: {data}\n\n");
                    format!("{:x}\r\n{event}\r\n", event.len())
                };
                for i in 0..100 {
                    tokio::time::sleep(per_token).await;
                    let data = format!(
                        r#"{{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"w{i} "}},"finish_reason":null}}]}}"#
                    );
                    if socket.write_all(chunk(data).as_bytes()).await.is_err() {
                        return;
                    }
                }
                let tail = chunk(r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":100,"total_tokens":105}}"#.into())
                    + &chunk("[DONE]".into())
                    + "0\r\n\r\n";
                if socket.write_all(tail.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn read(url: String, n: usize, mode: String) {
    let http = reqwest::Client::new();
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    // Each answer is read in a spawned task, as the bot reads it; one warm-up answer
    // first (connection, pool).
    let run = |http: reqwest::Client, body: serde_json::Value| {
        let url = url.clone();
        let mode = mode.clone();
        async move {
            match mode.as_str() {
                "tcp" | "std" | "lowat" => {
                    let addr = url
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        .unwrap()
                        .to_string();
                    let payload = body.to_string();
                    let request = format!(
                        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
                        payload.len()
                    );
                    let mut seen = Vec::new();
                    let mut buf = vec![0u8; 16384];
                    if mode == "std" || mode == "lowat" {
                        use std::io::{Read, Write};
                        let mut s = std::net::TcpStream::connect(&addr).unwrap();
                        s.write_all(request.as_bytes()).unwrap();
                        if mode == "lowat" {
                            // The kernel wakes the reader only once 64 KiB are queued (never,
                            // here) or the hold has passed: chunks pile up in between.
                            use std::os::fd::AsRawFd;
                            let hold: u64 =
                                std::env::var("HOLD_MS").map_or(10, |v| v.parse().unwrap());
                            let lowat: libc::c_int = 65536;
                            // SAFETY: setsockopt reads the int it is given.
                            unsafe {
                                libc::setsockopt(
                                    s.as_raw_fd(),
                                    libc::SOL_SOCKET,
                                    libc::SO_RCVLOWAT,
                                    (&lowat as *const libc::c_int).cast(),
                                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                                )
                            };
                            s.set_read_timeout(Some(Duration::from_millis(hold)))
                                .unwrap();
                            while !seen.ends_with(b"0\r\n\r\n") {
                                match s.read(&mut buf) {
                                    Ok(n) => {
                                        assert!(n > 0);
                                        seen.extend_from_slice(&buf[..n]);
                                    }
                                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                    Err(e) => panic!("{e}"),
                                }
                            }
                        }
                        while !seen.ends_with(b"0\r\n\r\n") {
                            let n = s.read(&mut buf).unwrap();
                            assert!(n > 0);
                            seen.extend_from_slice(&buf[..n]);
                        }
                    } else {
                        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                        s.write_all(request.as_bytes()).await.unwrap();
                        while !seen.ends_with(b"0\r\n\r\n") {
                            let n = s.read(&mut buf).await.unwrap();
                            assert!(n > 0);
                            seen.extend_from_slice(&buf[..n]);
                        }
                    }
                }
                "bytes" => {
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    let mut stream = response.bytes_stream();
                    let mut total = 0;
                    while let Some(chunk) = stream.next().await {
                        total += chunk.unwrap().len();
                    }
                    assert!(total > 0);
                }
                _ => {
                    let mut response = http.post(&url).json(&body).send().await.unwrap();
                    let mut decoder = gptbot::llm::sse::Decoder::new(1 << 20);
                    let mut events = Vec::new();
                    let mut seen = 0;
                    while let Some(bytes) = response.chunk().await.unwrap() {
                        decoder.feed(&bytes, &mut events).unwrap();
                        for event in events.drain(..) {
                            if event.data != "[DONE]" {
                                serde_json::from_str::<serde_json::Value>(&event.data).unwrap();
                                seen += 1;
                            }
                        }
                    }
                    assert!(seen > 0);
                }
            }
        }
    };
    tokio::spawn(run(http.clone(), body.clone())).await.unwrap();
    let before = cpu();
    for _ in 0..n {
        tokio::spawn(run(http.clone(), body.clone())).await.unwrap();
    }
    let after = cpu();
    println!(
        "{mode}: {:.2} ms CPU, {:.0} context switches per answer",
        (after.0 - before.0).as_secs_f64() * 1000.0 / n as f64,
        (after.1 - before.1) as f64 / n as f64
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let runtime = match args.get(5).map(String::as_str) {
        Some("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .unwrap();
    match args.get(1).map(String::as_str) {
        Some("serve") => runtime.block_on(serve(
            args[2].clone(),
            Duration::from_millis(args[3].parse().unwrap()),
        )),
        Some("read") => runtime.block_on(read(
            args[2].clone(),
            args[3].parse().unwrap(),
            args[4].clone(),
        )),
        _ => eprintln!("usage: stream_floor serve ADDR MS | read URL N MODE [multi|current]"),
    }
}
