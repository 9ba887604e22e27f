//! What the bot promises a user whatever the platform, each scenario written once over
//! [`common::chats::PrivateChat`] and run against the Telegram fake (flood limits on) and
//! the Discord fake (rate limits on): history per user, a long answer split within the
//! platform's limit, drafts that keep the edit interval and meet no 429, a 429 waited
//! exactly, "still answering" and /cancel, a message deleted mid-answer, a user who
//! blocks the bot mid-answer. The books are asserted after each.

mod common;

use std::time::Duration;

use common::chats::PrivateChat;
use common::*;

/// The answer's message is deleted while it streams: the edits that follow are refused
/// (Telegram "message to edit not found", Discord 404 Unknown Message), so the rest of
/// the answer — at the latest its final text — goes out as a new message instead of
/// being lost after it was charged.
async fn an_answer_whose_message_is_deleted_midway_arrives_as_a_new_message<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let pieces: Vec<String> = (0..30).map(|i| format!("word{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(50),
        usage: Some((20, 30)),
    }]);
    chat.say("go");
    let edited = chat.first_edit().await;
    chat.delete(&edited);

    let whole = pieces.concat();
    // A call with the final text is not enough: the edit carrying it may be refused.
    chat.wait_last(&whole).await;
    let texts: Vec<String> = chat
        .texts()
        .iter()
        .map(|t| t.trim_end().to_string())
        .collect();
    assert_eq!(texts, [whole.trim_end()], "the answer is in the chat once");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 50);
    // Recorded once, whole (read through the same key the other test expects empty).
    let turns = common::ledger::recorded(&t.app.sessions, &chat.session(), 2).await;
    assert_eq!(turns.len(), 2, "{turns:?}");
    assert_eq!(turns[1].content.trim_end(), whole.trim_end());
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// The user blocks the bot while it answers: every write is refused (Telegram 403 "bot
/// was blocked by the user", Discord 403 50007), so the answer can never be shown. The
/// model stream is stopped at the first refusal instead of running to its end, only what
/// was produced is charged, and nothing is kept as an exchange.
async fn a_user_who_blocks_the_bot_midway_stops_the_answer<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let pieces: Vec<String> = (0..200).map(|i| format!("part{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(20),
        usage: Some((20, 200)),
    }]);
    chat.say("a long story");
    chat.first_message().await;
    chat.block();
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.reserved, 0);
    // Stopped: the model had produced far less than its 200 parts (and the usage figure
    // it sends only at the end never came), so less than the full answer is charged.
    let full = 20 + 200;
    assert!(
        balance.used > 0 && balance.used < full,
        "charged {} for an answer nobody could see (full: {full})",
        balance.used
    );
    assert!(
        t.app
            .sessions
            .load(&chat.session())
            .await
            .unwrap()
            .turns
            .is_empty(),
        "an exchange nobody saw was kept"
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// An edit refused with a 429 (Telegram's flood control, Discord's route bucket): the
/// refused write is tried again exactly when the pause ends, nothing is written to the
/// chat meanwhile, and the final text arrives whole.
async fn a_429_on_an_edit_is_waited_exactly_and_the_final_text_arrives<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let pieces: Vec<String> = (0..20).map(|i| format!("word{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(50),
        usage: Some((20, 20)),
    }]);
    chat.refuse_next_edit();
    chat.say("go");
    chat.wait_last(&pieces.concat()).await;
    let edits = chat.edits();
    assert!(edits.len() >= 2, "{} edits", edits.len());
    let (refused, next) = (edits[0], edits[1]);
    let gap = next - refused;
    assert!(
        gap >= P::EDIT_PAUSE && gap < P::EDIT_PAUSE + Duration::from_millis(400),
        "edited again {gap:?} after a retry_after of {:?}",
        P::EDIT_PAUSE
    );
    assert!(
        chat.writes()
            .iter()
            .all(|&at| at <= refused || at - refused >= P::EDIT_PAUSE),
        "something was written to the chat during the pause"
    );
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 40);
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// Two questions in a row: the second is asked with the first exchange as history, the
/// chat showed "typing…", and the books and the history are keyed by this platform's
/// user.
async fn a_conversation_keeps_its_history_per_user_and_shows_typing<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    chat.say("hello bot");
    chat.wait_last("Echo: hello bot").await;
    assert!(chat.typing_shown(), "no typing indicator");
    chat.say("and again");
    chat.wait_last("Echo: and again").await;
    let requests = t.openai.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "system, question, answer, question");
    assert_eq!(messages[1]["content"], "hello bot");
    assert_eq!(messages[2]["content"], "Echo: hello bot");
    assert_eq!(messages[3]["content"], "and again");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.requests, 2);
    assert!(balance.used > 0);
    let turns = common::ledger::recorded(&t.app.sessions, &chat.session(), 4).await;
    assert_eq!(turns.len(), 4, "{turns:?}");
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// An answer longer than a message (prose, then a long code block): split into messages
/// the platform takes, each within its limit, no code block left open across a split,
/// nothing lost, special characters intact.
async fn a_long_answer_is_split_within_the_limit_with_code_blocks_closed<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let mut answer = String::from("Here is a long walk-through.\n\n");
    for i in 0..35 {
        answer.push_str(&format!(
            "Paragraph {i}: {}\n\n",
            "lorem ipsum dolor sit amet ".repeat(4)
        ));
    }
    answer.push_str("```python\n");
    for i in 0..60 {
        answer.push_str(&format!("print('line {i} of the program < 10 & done')\n"));
    }
    answer.push_str("```\n\nThat is all.");
    assert!(answer.chars().count() > 6000);
    let pieces: Vec<String> = answer
        .as_bytes()
        .chunks(250)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(5),
        usage: Some((30, 1800)),
    }]);
    chat.say("explain at length");
    chat.wait_last_ending("That is all.").await;

    let texts = chat.texts();
    assert!(texts.len() >= 2, "{} messages", texts.len());
    let mut visible = String::new();
    for (i, raw) in texts.iter().enumerate() {
        let shown = P::shown(raw).unwrap_or_else(|e| panic!("message {i}: {e}:\n{raw}"));
        assert!(
            shown.encode_utf16().count() <= P::MAX_CHARS,
            "message {i} is too long"
        );
        visible.push_str(&shown);
    }
    for i in [0, 34] {
        assert!(
            visible.contains(&format!("Paragraph {i}:")),
            "paragraph {i} lost"
        );
    }
    for i in [0, 30, 59] {
        assert!(
            visible.contains(&format!("print('line {i} of the program < 10 & done')")),
            "line {i} lost"
        );
    }
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 1830);
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// With the platform's limits on and a slow edit interval: the drafts of a streamed
/// answer keep the interval (the final text does not wait for it) and no write meets a
/// 429.
async fn streaming_keeps_the_edit_interval_and_meets_no_429<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default().with(P::EDIT_INTERVAL, "1500ms")).await;
    let pieces: Vec<String> = (0..100).map(|i| format!("t{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(30),
        usage: Some((10, 100)),
    }]);
    chat.say("stream");
    chat.wait_last(&pieces.concat()).await;
    let writes = chat.writes();
    assert!(writes.len() >= 3, "{} writes", writes.len());
    // Every write but the final text is a draft.
    for pair in writes[..writes.len() - 1].windows(2) {
        let gap = pair[1] - pair[0];
        // Measured at the fake, so allow for a little network jitter.
        assert!(
            gap >= Duration::from_millis(1480),
            "two drafts {gap:?} apart"
        );
    }
    assert_eq!(chat.rate_limited(), 0, "a write met a 429");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 110);
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// While an answer streams, a second message is refused with "still answering" (it never
/// reaches the model), and /cancel stops the answer: its message says so, the partial
/// answer is kept as the exchange, and only the prompt and what was produced are charged.
async fn a_second_message_gets_a_notice_and_cancel_stops_the_answer<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let pieces: Vec<String> = (0..40).map(|i| format!("part{i} ")).collect();
    t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(150),
        usage: Some((10, 40)),
    }]);
    chat.say("tell me a long story");
    chat.wait_any("the answer's first parts", &|t| t.contains("part2"))
        .await;
    chat.say("and another thing");
    chat.wait_any("the still-answering notice", &|t| {
        t == "Still answering your previous message — send /cancel to stop it."
    })
    .await;
    chat.command("cancel", &[]);
    chat.wait_any("the confirmation", &|t| t == "Stopped.")
        .await;
    chat.wait_any("the stopped answer", &|t| t.ends_with("(stopped)"))
        .await;
    assert_eq!(
        t.openai.request_count(),
        1,
        "the second message reached the model"
    );

    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    let turns = common::ledger::recorded(&t.app.sessions, &chat.session(), 2).await;
    assert_eq!(turns.len(), 2);
    let partial = &turns[1].content;
    assert!(partial.starts_with("part0 part1 part2"), "{partial}");
    assert!(!partial.contains("part39"));
    // Charged: the prompt and the partial answer, as counted locally (no usage came).
    let counter = gptbot::llm::tokens::TokenCounter::for_model("gpt-4o-mini");
    let system = &t.app.settings.bot.system_prompt;
    let fitting = gptbot::chat::context::Fitting {
        system,
        system_tokens: counter.count(system).await,
        history: &[],
        user: "tell me a long story",
        user_tokens: counter.count("tell me a long story").await,
        overhead: counter.overhead(),
        max_tokens: 100,
    };
    let prompt = gptbot::chat::context::build_prompt(&fitting, 16384).unwrap();
    assert_eq!(
        balance.used,
        i64::from(prompt.tokens + counter.count(partial).await)
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// A reasoning model: while it thinks the chat shows "💭 Thinking…" with the end of its
/// thinking (`chat.reasoning = "collapsed"`, the default); the final message quotes the
/// thinking collapsed (Telegram an expandable quote, Discord small print) above the
/// answer. The thinking — streamed as `reasoning_content`, or inline as
/// `<think>…</think>` — is never the answer, never kept in the history nor sent back to
/// the model, and its tokens are charged.
async fn a_reasoning_models_thinking_is_shown_collapsed_and_never_kept<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    let mut pieces: Vec<String> = (0..30).map(|i| format!("{REASONING}step{i} ")).collect();
    pieces.push("The answer is 4.".into());
    t.openai.script([
        Behavior::Stream {
            pieces,
            delay: Duration::from_millis(60),
            usage: Some((20, 90)),
        },
        // A server without a reasoning parser: the thinking inline, its tags cut apart,
        // and no usage figures (counted locally).
        Behavior::Stream {
            pieces: [
                "<thi",
                "nk>I recall the",
                " earlier sum.</th",
                "ink>\n\n",
                "Still 4.",
            ]
            .map(String::from)
            .to_vec(),
            delay: Duration::from_millis(20),
            usage: None,
        },
    ]);
    chat.say("what is 2+2?");
    chat.wait_any("the thinking, live", &|t| {
        t.starts_with("💭 Thinking…") && t.contains("step")
    })
    .await;
    chat.wait_last_ending("The answer is 4.").await;
    let (thought, answer) = P::thought_and_answer(chat.texts().last().unwrap());
    let thought = thought.expect("the thinking is quoted above the answer");
    assert!(thought.starts_with("💭 Thought for "), "{thought}");
    assert!(thought.contains("step29"), "{thought}");
    assert_eq!(answer, "The answer is 4.");
    let first = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(
        first.used, 110,
        "the thinking's tokens are charged as reported"
    );

    chat.say("are you sure?");
    chat.wait_last_ending("Still 4.").await;
    let (thought, answer) = P::thought_and_answer(chat.texts().last().unwrap());
    assert!(thought.unwrap().contains("I recall the earlier sum."));
    assert_eq!(answer, "Still 4.");
    for text in chat.texts() {
        assert!(
            !text.contains("think&gt;") && !text.contains("think>"),
            "a tag reached the chat: {text}"
        );
    }
    // The second request carries the first exchange without its thinking.
    let requests = t.openai.requests();
    let messages = requests[1]["messages"].as_array().unwrap();
    assert_eq!(messages[2]["content"], "The answer is 4.");
    assert!(
        !requests[1].to_string().contains("step1"),
        "thinking sent back"
    );
    let turns = common::ledger::recorded(&t.app.sessions, &chat.session(), 4).await;
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[3].content, "Still 4.");
    assert!(
        turns
            .iter()
            .all(|turn| !turn.content.contains("step") && !turn.content.contains("recall"))
    );
    // Counted locally: the prompt, the answer and the thinking.
    let counter = gptbot::llm::tokens::TokenCounter::for_model("gpt-4o-mini");
    let thinking = counter.count("I recall the earlier sum.").await;
    let answer = counter.count("Still 4.").await;
    let second = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    let charged = second.used - first.used;
    assert!(
        charged > i64::from(thinking + answer),
        "charged {charged}: the thinking ({thinking}) was not"
    );
    assert_eq!(
        turns[3].tokens, answer,
        "the history counts the answer only"
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// `chat.reasoning = "hidden"`: while the model thinks only "💭 Thinking…" shows, and the
/// final message is the answer alone.
async fn hidden_reasoning_shows_only_that_the_model_thinks<P: PrivateChat>() {
    let (chat, t, _stop) =
        P::start(Options::default().with("GPTBOT__CHAT__REASONING", "hidden")).await;
    let mut pieces: Vec<String> = (0..20).map(|i| format!("{REASONING}secret{i} ")).collect();
    pieces.push("Done.".into());
    t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(60),
        usage: Some((20, 60)),
    }]);
    chat.say("think hard");
    chat.wait_any("the thinking notice", &|t| t == "💭 Thinking…")
        .await;
    chat.wait_last("Done.").await;
    assert!(
        chat.texts().iter().all(|t| !t.contains("secret")),
        "hidden thinking was shown"
    );
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 80);
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// A model that answers nothing (no text at all, only its usage): the user is told so,
/// the prompt is charged as reported, nothing is kept, and the handler does not die (the
/// stream, read to its end while waiting for the first text, was polled once more).
async fn an_answer_with_no_text_is_told_and_charged_as_reported<P: PrivateChat>() {
    let (chat, t, _stop) = P::start(Options::default()).await;
    t.openai.script([Behavior::Stream {
        pieces: Vec::new(),
        delay: Duration::ZERO,
        usage: Some((25, 0)),
    }]);
    chat.say("say nothing");
    chat.wait_last("(The model returned an empty answer.)")
        .await;
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 1).await;
    assert_eq!(balance.used, 25);
    assert_eq!(balance.reserved, 0);
    // The bot still answers.
    chat.say("hello");
    chat.wait_last("Echo: hello").await;
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// An admin grants tokens to another user with the platform's admin command (Telegram
/// `/grant 43 300`, Discord `/grant` with typed options); the same command from someone
/// who is not an admin is refused and changes nothing. Through the one admin service,
/// so the ledger has the grant and the books hold.
async fn an_admin_grants_tokens_and_anyone_else_is_refused<P: PrivateChat>() {
    let other = gptbot::core::event::UserId::parse(P::OTHER_ACCOUNT).unwrap();
    let grant = [
        ("user", serde_json::json!(P::OTHER)),
        ("tokens", serde_json::json!(300)),
    ];
    {
        let (chat, t, _stop) =
            P::start(Options::default().with("GPTBOT__ACCESS__ADMINS", P::ME)).await;
        chat.command("grant", &grant);
        let said = format!(
            "Granted 300 tokens to {}: 20300 remaining of 20300 granted.",
            P::OTHER_ACCOUNT
        );
        chat.wait_any("the grant confirmed", &|t| t == said).await;
        let balance = t.app.quota.balance(&other).await.unwrap();
        assert_eq!((balance.granted, balance.remaining), (20300, 20300));
        common::ledger::assert_books(&t.app.quota, &other).await;
    }
    let (chat, t, _stop) = P::start(Options::default()).await;
    chat.command("grant", &grant);
    chat.wait_any("the refusal", &|t| {
        t == "Not allowed: that command is for the bot's admins."
    })
    .await;
    let balance = t.app.quota.balance(&other).await.unwrap();
    assert_eq!(
        balance.granted, 20000,
        "a refused grant changed the balance"
    );
    common::ledger::assert_books(&t.app.quota, &other).await;
}

on_both!(
    an_answer_whose_message_is_deleted_midway_arrives_as_a_new_message,
    a_user_who_blocks_the_bot_midway_stops_the_answer,
    a_429_on_an_edit_is_waited_exactly_and_the_final_text_arrives,
    a_conversation_keeps_its_history_per_user_and_shows_typing,
    a_long_answer_is_split_within_the_limit_with_code_blocks_closed,
    streaming_keeps_the_edit_interval_and_meets_no_429,
    a_second_message_gets_a_notice_and_cancel_stops_the_answer,
    a_reasoning_models_thinking_is_shown_collapsed_and_never_kept,
    hidden_reasoning_shows_only_that_the_model_thinks,
    an_answer_with_no_text_is_told_and_charged_as_reported,
    an_admin_grants_tokens_and_anyone_else_is_refused,
);
