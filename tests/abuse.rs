//! Files as an attacker sends them, through the real platforms' fakes: a PDF bomb (3 MB
//! that inflates to 3 GiB), a PDF from a user who cannot pay, too many pages, a file
//! larger than Telegram's getFile said, a Discord attachment that redirects elsewhere,
//! and voice notes whose transcription must be paid for exactly once. The books are
//! checked after each.

mod common;

use common::ledger::assert_books;
use common::telegram::*;
use common::*;
use gptbot::core::event::{Platform, UserId};
use serde_json::{Value, json};

struct Bot {
    t: TestApp,
    tg: FakeTelegram,
    _stop: tokio_util::sync::DropGuard,
}

async fn spawn_bot(options: Options) -> Bot {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let t = spawn_app_with(
        options
            .telegram(&tg)
            .with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "100ms")
            .with("GPTBOT__TELEGRAM__FIRST_MESSAGE_DELAY", "0ms"),
    )
    .await;
    let (stop, token) = stopper();
    t.app.start(token).await.expect("the bot starts");
    Bot { t, tg, _stop: stop }
}

fn user(id: i64) -> UserId {
    UserId::new(Platform::Telegram, id.to_string())
}

async fn wait_text(tg: &FakeTelegram, chat: i64, needle: &str) -> String {
    let what = format!("a message containing {needle:?} in chat {chat}");
    tg.wait_until(15, &what, |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"].as_i64() == Some(chat)
                && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
        })
    })
    .await;
    tg.texts_in(chat)
        .into_iter()
        .find(|t| t.contains(needle))
        .unwrap_or_default()
}

fn document(chat: i64, file_id: &str, name: &str, size: usize, caption: &str) -> Value {
    json!({
        "date": 1_764_000_000, "chat": private_chat(chat), "from": user_json(chat, "Mal"),
        "document": {"file_id": file_id, "file_unique_id": format!("u-{file_id}"),
                     "file_name": name, "mime_type": "application/pdf", "file_size": size},
        "caption": caption
    })
}

#[test]
fn the_test_bomb_is_a_valid_zlib_stream_that_inflates_to_its_size() {
    use std::io::Read;
    let pdf = common::pdf::bomb(4);
    let start = pdf.windows(7).position(|w| w == b"stream\n").unwrap() + 7;
    let end = pdf.windows(10).rposition(|w| w == b"\nendstream").unwrap();
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(&pdf[start..end])
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated.len(), 4 << 20);
    assert!(inflated.iter().all(|&b| b == 0));
}

#[tokio::test]
async fn a_pdf_from_a_user_who_cannot_pay_is_neither_downloaded_nor_read() {
    let b = spawn_bot(Options::default()).await;
    b.t.app.quota.set_quota(&user(70), Some(0)).await.unwrap();
    let bomb = common::pdf::bomb(64);
    b.tg.serve_file("bomb-1", &bomb);
    b.tg.push_raw_message(document(
        70,
        "bomb-1",
        "report.pdf",
        bomb.len(),
        "summarise",
    ));
    let said = wait_text(&b.tg, 70, "Quota exhausted").await;
    assert!(said.contains("your file was not read"), "{said}");
    assert!(b.tg.calls_of("getfile").is_empty(), "getFile was asked");
    assert!(b.tg.downloads().is_empty(), "the file was downloaded");
    assert_eq!(b.t.openai.request_count(), 0);
    let balance = b.t.app.quota.balance(&user(70)).await.unwrap();
    assert_eq!(
        (balance.remaining, balance.used, balance.reserved),
        (0, 0, 0)
    );
    assert_books(&b.t.app.quota, &user(70)).await;
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The defect as reported: 3 MB that inflate to 3 GiB took the bot to 6.4 GB. Now the
/// PDF is read in a child under a memory cap: the bot (the real binary) stays small,
/// answers someone else meanwhile, tells the sender in one sentence, charges nothing.
#[tokio::test]
async fn a_pdf_bomb_is_refused_in_one_sentence_while_the_bot_stays_small_and_answers_others() {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let openai = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(&openai, None, &dir, &[]);
    env.insert("TELEGRAM_BOT_TOKEN".into(), common::telegram::TOKEN.into());
    env.insert("GPTBOT__TELEGRAM__API_URL".into(), tg.api_url());
    env.insert("GPTBOT__TELEGRAM__EDIT_INTERVAL".into(), "100ms".into());
    let log = dir.path().join("gptbot.log");
    let mut child = spawn_gptbot_run(&env, &log);
    let pid = child.id().unwrap();
    tg.wait_until(20, "the bot polling", |calls| {
        calls
            .iter()
            .any(|c| c.method == "getupdates" && c.body["timeout"] == 10)
    })
    .await;

    let bomb = common::pdf::bomb(3 << 10);
    assert!(bomb.len() < 4 << 20, "the bomb is {} bytes", bomb.len());
    tg.serve_file("bomb-1", &bomb);
    tg.push_raw_message(document(
        71,
        "bomb-1",
        "report.pdf",
        bomb.len(),
        "summarise",
    ));
    // Someone else asks meanwhile, and is answered.
    tg.push_message(private_chat(72), user_json(72, "Ada"), "hello there", None);
    let answered = wait_text(&tg, 72, "Echo: hello there").await;
    assert_eq!(answered, "Echo: hello there");
    let said = wait_text(&tg, 71, "too large to read").await;
    assert!(
        said.starts_with("report.pdf is too large to read"),
        "{said}"
    );
    let peak = peak_rss(pid);
    eprintln!("peak RSS of the bot: {} MiB", peak >> 20);
    assert!(
        peak < 300 << 20,
        "the bot's peak RSS was {} MiB",
        peak >> 20
    );
    assert_eq!(tg.texts_in(71), vec![said], "one sentence, nothing else");

    signal(&child, "TERM");
    assert!(exit_status(&mut child, 30).await.success());
    let settings = gptbot::config::Settings::load(None, &env).unwrap();
    let quota = common::ledger::ledger_of(&env).await;
    let books = quota.balance(&user(71)).await.unwrap();
    assert_eq!((books.used, books.reserved, books.requests), (0, 0, 0));
    assert_eq!(books.remaining, settings.quota.default_tokens);
    assert_books(&quota, &user(71)).await;
    assert_eq!(openai.request_count(), 1, "only the other user's question");
}

#[tokio::test]
async fn a_pdf_with_more_pages_than_allowed_is_refused_and_costs_nothing() {
    let b = spawn_bot(Options::default().with("GPTBOT__FILES__MAX_PDF_PAGES", "2")).await;
    let three = common::pdf::pages(3);
    b.tg.serve_file("p3", &three);
    b.tg.push_raw_message(document(73, "p3", "long.pdf", three.len(), "read it"));
    let said = wait_text(&b.tg, 73, "long.pdf has 3 pages").await;
    assert!(said.contains("up to 2 pages"), "{said}");
    assert_eq!(b.t.openai.request_count(), 0);

    // Within the limit, every page's text is read.
    let two = common::pdf::pages(2);
    b.tg.serve_file("p2", &two);
    b.tg.push_raw_message(document(73, "p2", "short.pdf", two.len(), "read it"));
    wait_text(&b.tg, 73, "Echo: File: short.pdf").await;
    let asked = b.t.openai.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        asked.contains("Page 1 of the report") && asked.contains("Page 2 of the report"),
        "{asked}"
    );
    common::ledger::settled(&b.t.app.quota, &user(73), 1).await;
    assert_books(&b.t.app.quota, &user(73)).await;
}

#[tokio::test]
async fn a_telegram_file_larger_than_get_file_said_is_counted_and_cut_at_the_limit() {
    let b = spawn_bot(Options::default().with("GPTBOT__FILES__MAX_BYTES", "20000")).await;
    let big = vec![b'a'; 50_000];
    b.tg.serve_file_claiming("liar", &big, 10);
    b.tg.push_raw_message(json!({
        "date": 1_764_000_000, "chat": private_chat(74), "from": user_json(74, "Mal"),
        "document": {"file_id": "liar", "file_unique_id": "u-liar",
                     "file_name": "notes.txt", "mime_type": "text/plain", "file_size": 10},
        "caption": "read it"
    }));
    let said = wait_text(&b.tg, 74, "notes.txt is too large").await;
    assert!(said.contains("up to 19 KB"), "{said}");
    assert_eq!(
        b.tg.downloads(),
        ["documents/liar.bin"],
        "it was fetched, and cut"
    );
    assert_eq!(b.t.openai.request_count(), 0);
    assert_books(&b.t.app.quota, &user(74)).await;
}

#[tokio::test]
async fn a_discord_attachment_that_redirects_off_the_cdn_is_not_followed() {
    // Where the redirect leads: a private service that must never be asked.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inside = format!("http://{}/latest/meta-data", listener.local_addr().unwrap());
    let counted = hits.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "secret" }
        });
        axum::serve(listener, app).await.unwrap();
    });
    let b = common::discord::spawn_bot(Options::default()).await;
    let file =
        b.dc.attachment_redirecting("notes.txt", "text/plain", &inside);
    let author = common::discord::user("4000000000000000075", "mal");
    b.dc.send_with_attachments(
        "3000000000000000075",
        author,
        "read it",
        None,
        vec![file],
        0,
    );
    b.dc.wait_text(15, "the refusal", |t| {
        t.contains("could not fetch notes.txt")
    })
    .await;
    assert_eq!(b.dc.downloads().len(), 1, "the CDN URL was asked once");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(b.t.openai.request_count(), 0);
}

/// An Ogg Opus voice note that lasts `seconds` (its last page's granule position).
fn ogg_opus(seconds: u64) -> Vec<u8> {
    fn page(granule: u64, body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        page.push(1);
        page.push(body.len() as u8);
        page.extend_from_slice(body);
        page
    }
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&312u16.to_le_bytes());
    head.extend_from_slice(&[0x80, 0xbb, 0, 0, 0, 0, 0]);
    let mut file = page(0, &head);
    file.extend(page(0, b"OpusTags"));
    file.extend(page(312 + 48_000 * seconds, &[1; 100]));
    file
}

fn voice(chat: i64, declared: u32, size: usize) -> Value {
    json!({
        "date": 1_764_000_000, "chat": private_chat(chat), "from": user_json(chat, "Jo"),
        "voice": {"file_id": format!("vo-{chat}"), "file_unique_id": format!("u-vo-{chat}"),
                  "duration": declared, "mime_type": "audio/ogg", "file_size": size}
    })
}

/// The defect: a transcription made and shown, then refunded when the answer could not
/// be paid for. It is charged once made, as its own ledger entry, whatever follows; and
/// its length comes from the audio (12 s), not from the client (1 s).
#[tokio::test]
async fn a_transcription_is_charged_once_from_the_audio_even_when_the_answer_cannot_be_paid() {
    let b = spawn_bot(
        Options::default()
            .with("GPTBOT__MODEL__TRANSCRIPTION", "whisper-1")
            .with("GPTBOT__QUOTA__AUDIO_TOKENS_PER_SECOND", "7"),
    )
    .await;
    b.t.openai.set_transcript("what is the capital of France");
    // Enough for 12 s of audio (84), not for an answer (100 tokens at least).
    b.t.app.quota.set_quota(&user(75), Some(150)).await.unwrap();
    let note = ogg_opus(12);
    b.tg.serve_file("vo-75", &note);
    b.tg.push_raw_message(voice(75, 1, note.len()));
    wait_text(&b.tg, 75, "🎤 “what is the capital of France”").await;
    wait_text(&b.tg, 75, "Quota exhausted").await;
    assert_eq!(b.t.openai.transcriptions().len(), 1);
    assert_eq!(b.t.openai.request_count(), 0, "no answer was asked for");

    let balance = b.t.app.quota.balance(&user(75)).await.unwrap();
    assert_eq!(
        (balance.used, balance.reserved, balance.remaining),
        (84, 0, 66)
    );
    let entries = b.t.app.quota.history(&user(75), 100).await.unwrap();
    let charges: Vec<_> = entries.iter().filter(|e| e.d_used != 0).collect();
    assert_eq!(charges.len(), 1, "charged exactly once: {entries:?}");
    assert_eq!(charges[0].kind, "settle");
    assert_eq!(charges[0].d_used, 84);
    assert_eq!(charges[0].note.as_deref(), Some("whisper-1"));
    assert_books(&b.t.app.quota, &user(75)).await;

    // Who cannot pay for the recording is told before it is fetched.
    b.t.app.quota.set_quota(&user(76), Some(20)).await.unwrap();
    b.tg.serve_file("vo-76", &note);
    b.tg.push_raw_message(voice(76, 12, note.len()));
    let said = wait_text(&b.tg, 76, "Quota exhausted").await;
    assert!(said.contains("costs 84 tokens and 20 are left"), "{said}");
    assert_eq!(b.t.openai.transcriptions().len(), 1);
    assert!(
        !b.tg
            .downloads()
            .contains(&"documents/vo-76.bin".to_string())
    );
    assert_books(&b.t.app.quota, &user(76)).await;
}
