//! What the bot promises a user whatever the platform, each scenario written once over
//! [`common::chats::PrivateChat`] and run against the Telegram fake (flood limits on) and
//! the Discord fake (rate limits on): an answer whose message is deleted while it streams
//! still arrives whole, and a user who blocks the bot mid-answer stops it and is charged
//! only for what was produced. The books are asserted after each.

mod common;

use std::time::Duration;

use common::chats::{Discord, PrivateChat, Telegram};
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
    let turns = t.app.sessions.load(&chat.session()).await.unwrap().turns;
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

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod telegram {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::Telegram>().await
                }
            )*
        }
        mod discord {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::Discord>().await
                }
            )*
        }
    };
}

on_both!(
    an_answer_whose_message_is_deleted_midway_arrives_as_a_new_message,
    a_user_who_blocks_the_bot_midway_stops_the_answer,
    a_429_on_an_edit_is_waited_exactly_and_the_final_text_arrives,
);
