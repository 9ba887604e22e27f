use proptest::prelude::*;

use super::*;

fn turn(role: Role, text: &str, tokens: u32) -> Turn {
    Turn {
        role,
        content: text.into(),
        tokens,
        tools: None,
    }
}

fn fitting<'a>(history: &'a [Turn], user_tokens: u32, max_tokens: u32) -> Fitting<'a> {
    Fitting {
        system: "be brief",
        system_tokens: 3,
        history,
        user: "next?",
        user_tokens,
        overhead: 3,
        max_tokens,
    }
}

fn conversation(exchanges: usize) -> Vec<Turn> {
    (0..exchanges)
        .flat_map(|i| {
            [
                turn(Role::User, &format!("question {i}"), 10),
                turn(Role::Assistant, &format!("answer {i}"), 20),
            ]
        })
        .collect()
}

#[test]
fn drops_oldest_exchanges_first_and_keeps_system_prompt() {
    let history = conversation(10);
    let f = fitting(&history, 2, 100);
    let all = build_prompt(&f, 100_000).unwrap();
    assert_eq!((all.dropped, all.kept, all.messages.len()), (0, 20, 22));

    // Fixed part: 3 + 2 + 2*3 + 3 = 14; each exchange 36; room for 3 exchanges.
    let p = build_prompt(&f, 100 + 14 + 3 * 36 + 10).unwrap();
    assert_eq!((p.kept, p.dropped), (6, 14));
    assert_eq!(p.tokens, 14 + 3 * 36);
    assert_eq!(
        p.messages[0],
        ChatMessage::new(MessageRole::System, "be brief")
    );
    assert_eq!(p.messages[1].content, "question 7");
    assert_eq!(p.messages[6].content, "answer 9");
    assert_eq!(p.messages[7], ChatMessage::new(MessageRole::User, "next?"));
}

#[test]
fn an_answer_is_never_kept_without_its_question() {
    // Room for the newest answer alone but not for its question with it.
    let history = conversation(2);
    let f = fitting(&history, 2, 100);
    let p = build_prompt(&f, 100 + 14 + 30).unwrap();
    assert_eq!(p.kept, 0);
    assert_eq!(p.messages.len(), 2);
    // A history that starts with an orphan answer (or has two questions in a row).
    let odd = vec![
        turn(Role::Assistant, "orphan", 5),
        turn(Role::User, "q1", 5),
        turn(Role::User, "q2", 5),
        turn(Role::Assistant, "a2", 5),
    ];
    let p = build_prompt(&fitting(&odd, 2, 10), 10_000).unwrap();
    let contents: Vec<_> = p.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["be brief", "q2", "a2", "next?"]);
}

#[test]
fn a_message_that_cannot_fit_is_refused() {
    let err = build_prompt(&fitting(&[], 500, 100), 300).unwrap_err();
    assert_eq!(err.limit, 300);
    assert_eq!(err.needed, 3 + 500 + 6 + 3 + 100);
}

#[test]
fn refit_uses_the_servers_figures() {
    let history = conversation(10);
    let f = fitting(&history, 2, 100);
    let sent = build_prompt(&f, 100_000).unwrap();
    // The server counted twice what we did and has a 500-token context.
    let overflow = Overflow {
        detail: String::new(),
        requested: Some(sent.tokens * 2),
        limit: Some(500),
    };
    let p = refit(&f, &sent, &overflow).unwrap();
    // In the server's tokens the new prompt fits its context with room for the answer.
    assert!(p.tokens * 2 + 100 <= 500, "{}", p.tokens);
    assert!(p.kept > 0 && p.kept < sent.kept);
    // Without figures, half the history goes.
    let blind = Overflow {
        detail: String::new(),
        requested: None,
        limit: None,
    };
    let p = refit(&f, &sent, &blind).unwrap();
    assert_eq!(p.kept, 10);
}

#[test]
fn refit_refuses_when_the_newest_message_alone_was_sent() {
    let f = fitting(&[], 400, 100);
    let sent = build_prompt(&f, 10_000).unwrap();
    let overflow = Overflow {
        detail: String::new(),
        requested: Some(900),
        limit: Some(512),
    };
    let err = refit(&f, &sent, &overflow).unwrap_err();
    assert_eq!(err.limit, 512);
    // Our 412 fixed tokens are 900 of the server's; plus the answer.
    assert_eq!(err.needed, 900 + 100);
}

fn any_history() -> impl Strategy<Value = Vec<Turn>> {
    prop::collection::vec(
        (any::<bool>(), 0u32..200).prop_map(|(user, tokens)| {
            let role = if user { Role::User } else { Role::Assistant };
            turn(role, &format!("{role:?} {tokens}"), tokens)
        }),
        0..40,
    )
}

proptest! {
    #[test]
    fn the_prompt_fits_and_alternates(
        history in any_history(),
        user_tokens in 0u32..300,
        max_tokens in 1u32..500,
        context in 0u32..4000,
    ) {
        let f = fitting(&history, user_tokens, max_tokens);
        match build_prompt(&f, context) {
            Err(e) => prop_assert!(e.needed > context),
            Ok(p) => {
                prop_assert!(p.tokens + max_tokens <= context);
                prop_assert_eq!(&p.messages[0], &ChatMessage::new(MessageRole::System, "be brief"));
                prop_assert_eq!(p.messages.last().unwrap(), &ChatMessage::new(MessageRole::User, "next?"));
                // Strict alternation after the system prompt: user, assistant, …, user.
                for (i, m) in p.messages[1..].iter().enumerate() {
                    let expected = if i % 2 == 0 { MessageRole::User } else { MessageRole::Assistant };
                    prop_assert_eq!(m.role, expected);
                }
                prop_assert_eq!(p.kept + p.dropped, history.len());
                let history_cost: u32 = p.tokens - (3 + user_tokens + 2 * 3 + REPLY_PRIMING);
                prop_assert!(history_cost >= 3 * p.kept as u32);
            }
        }
    }

    #[test]
    fn refit_always_shrinks_or_refuses(
        history in any_history(),
        factor in 1u32..4,
        limit in 50u32..3000,
    ) {
        let f = fitting(&history, 10, 40);
        let sent = build_prompt(&f, 100_000).unwrap();
        let overflow = Overflow { detail: String::new(), requested: Some(sent.tokens * factor), limit: Some(limit) };
        match refit(&f, &sent, &overflow) {
            Ok(p) => {
                prop_assert!(p.tokens < sent.tokens);
                prop_assert!(p.tokens * factor + 40 <= limit);
            }
            Err(e) => prop_assert_eq!(e.limit, limit),
        }
    }
}
