//! The operators' language: one typed [`AdminCommand`] that the chat's `/grant …`, the
//! web admin page's form and the command line all produce, and that one service
//! (`crate::admin`) applies. Parsing is pure: accounts are checked for their form here
//! and resolved (a bare id is on the admin's own platform) by whoever runs them.

use super::command::Command;
use super::error::Invalid;
use super::event::{Platform, UserId};

/// An account an admin command names: `platform:id`, or a bare id meaning the admin's
/// own platform (typed in a chat: `/grant 12345 500`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    Id(UserId),
    Bare(String),
}

impl Account {
    pub fn parse(text: &str) -> Result<Account, Invalid> {
        let text = text.trim();
        if text.contains(':') {
            UserId::parse(text).map(Account::Id)
        } else if text.is_empty() || text.chars().any(char::is_whitespace) {
            Err(Invalid(format!("`{text}` is not a user id")))
        } else {
            Ok(Account::Bare(text.to_string()))
        }
    }

    /// The account, a bare id taken on `platform` (none: it must be `platform:id`).
    pub fn on(&self, platform: Option<Platform>) -> Result<UserId, Invalid> {
        match (self, platform) {
            (Account::Id(id), _) => Ok(id.clone()),
            (Account::Bare(id), Some(platform)) => Ok(UserId::new(platform, id)),
            (Account::Bare(id), None) => Err(Invalid(format!(
                "`{id}` is not of the form platform:user (e.g. telegram:12345)"
            ))),
        }
    }
}

/// What `/allow` and `/deny` name: an account, a group (`group:telegram:-100…`), or
/// `chat` — the group the command is sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Account(Account),
    Group(UserId),
    ThisChat,
    /// `tools:<subject>`: whether the subject's answers may call tools (`[tools]`).
    Tools(Box<Subject>),
}

impl Subject {
    pub fn parse(text: &str) -> Result<Subject, Invalid> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("chat") {
            return Ok(Subject::ThisChat);
        }
        if let Some(inner) = text.strip_prefix("tools:") {
            return match Subject::parse(inner)? {
                Subject::Tools(_) => Err(Invalid("`tools:` is written once".into())),
                inner => Ok(Subject::Tools(Box::new(inner))),
            };
        }
        match text.strip_prefix("group:") {
            Some(group) => UserId::parse(group).map(Subject::Group),
            None => Account::parse(text).map(Subject::Account),
        }
    }
}

/// One operator operation, from any front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// Add tokens (negative takes away); `reason` goes into the log and the answer.
    Grant {
        user: Account,
        tokens: i64,
        reason: Option<String>,
    },
    /// Set what is left; `None`: unlimited.
    SetQuota {
        user: Account,
        tokens: Option<i64>,
    },
    /// Set the account's own refill amount; `None`: the plan's.
    Refill {
        user: Account,
        tokens: Option<i64>,
    },
    /// The balance and today's use.
    Usage {
        user: Account,
    },
    /// The newest `limit` ledger entries.
    History {
        user: Account,
        limit: i64,
    },
    Stats,
    /// Tokens held for answers in progress.
    Holds,
    /// Return one hold's tokens now.
    Release {
        hold: i64,
    },
    /// Allow or deny a user or a group.
    Rule {
        subject: Subject,
        allowed: bool,
    },
    /// The stored rules.
    Rules,
    /// Give a Telegram Stars payment back and take its tokens (what remains of them).
    Refund {
        charge: String,
    },
    /// Stars payments, newest first: all, or those credited to one account.
    Payments {
        user: Option<Account>,
    },
}

/// Admin commands with their usage, for /help (to admins) and the platforms' menus.
pub const ADMIN_COMMANDS: &[(&str, &str)] = &[
    (
        "grant",
        "/grant <user> <tokens> [reason] — add tokens (negative takes away)",
    ),
    (
        "setquota",
        "/setquota <user> <tokens|unlimited> — set what is left",
    ),
    (
        "refill",
        "/refill <user> <tokens|default> — set a user's own refill amount",
    ),
    (
        "usage",
        "/usage <user> — a user's balance and today's usage",
    ),
    (
        "stats",
        "/stats — users, tokens today and in total, requests, errors",
    ),
    ("holds", "/holds — tokens held for answers in progress"),
    ("release", "/release <hold id> — return a hold's tokens now"),
    (
        "allow",
        "/allow <user|chat> — let a user (or this group) use the bot",
    ),
    (
        "deny",
        "/deny <user|chat> — stop a user (or this group) from using the bot",
    ),
    (
        "payments",
        "/payments [user] — Telegram Stars payments and refunds",
    ),
    (
        "refund",
        "/refund <charge id> — give a payment's Stars back, take its tokens",
    ),
];

pub fn admin_usage(name: &str) -> &'static str {
    ADMIN_COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, usage)| *usage)
        .unwrap_or("")
}

/// A token amount, or `keyword` (`unlimited`, `default`) for "none"; never negative.
pub fn parse_amount(text: &str, keyword: &str) -> Result<Option<i64>, Invalid> {
    let text = text.trim();
    if text.eq_ignore_ascii_case(keyword) {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(Invalid(format!(
            "`{text}` is neither a number of tokens (0 or more) nor `{keyword}`"
        ))),
    }
}

/// `/name args` as an admin command: `None` when `name` is not one, `AdminUsage` when
/// its arguments do not fit, `AdminInvalid` when an account or group in them is not one.
pub(super) fn parse_admin(name: &str, args: &str) -> Option<Command> {
    let words: Vec<&str> = args.split_whitespace().collect();
    // `Err(None)`: the usage line; `Err(Some(why))`: what is wrong with a name.
    let account = |text: &str| Account::parse(text).map_err(|e| Some(e.0));
    let number = |text: &str| text.parse::<i64>().map_err(|_| None);
    let amount = |text: &str, keyword| parse_amount(text, keyword).map_err(|_| None);
    let command: Result<AdminCommand, Option<String>> = match (name, words.as_slice()) {
        ("grant", [user, n, reason @ ..]) => number(n).and_then(|tokens| {
            Ok(AdminCommand::Grant {
                user: account(user)?,
                tokens,
                reason: (!reason.is_empty()).then(|| reason.join(" ")),
            })
        }),
        ("setquota", [user, n]) => amount(n, "unlimited").and_then(|tokens| {
            Ok(AdminCommand::SetQuota {
                user: account(user)?,
                tokens,
            })
        }),
        ("refill", [user, n]) => amount(n, "default").and_then(|tokens| {
            Ok(AdminCommand::Refill {
                user: account(user)?,
                tokens,
            })
        }),
        ("usage", [user]) => account(user).map(|user| AdminCommand::Usage { user }),
        ("stats", []) => Ok(AdminCommand::Stats),
        ("holds", []) => Ok(AdminCommand::Holds),
        ("release", [id]) => number(id).map(|hold| AdminCommand::Release { hold }),
        ("refund", [charge]) => Ok(AdminCommand::Refund {
            charge: charge.to_string(),
        }),
        ("payments", []) => Ok(AdminCommand::Payments { user: None }),
        ("payments", [user]) => {
            account(user).map(|user| AdminCommand::Payments { user: Some(user) })
        }
        ("allow" | "deny", [subject]) => Subject::parse(subject)
            .map(|subject| AdminCommand::Rule {
                subject,
                allowed: name == "allow",
            })
            .map_err(|e| Some(e.0)),
        (
            "grant" | "setquota" | "refill" | "usage" | "stats" | "holds" | "release" | "allow"
            | "deny" | "refund" | "payments",
            _,
        ) => Err(None),
        _ => return None,
    };
    Some(match command {
        Ok(c) => Command::Admin(c),
        Err(Some(why)) => Command::AdminInvalid(why),
        Err(None) => Command::AdminUsage(admin_usage(name)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::command::{Input, parse};
    use super::*;

    fn tg(id: &str) -> Account {
        Account::Id(UserId::new(Platform::Telegram, id))
    }

    #[test]
    fn admin_commands_parse_or_explain_their_usage() {
        assert_eq!(
            parse("/grant telegram:5 -300", None),
            Input::Command(Command::Admin(AdminCommand::Grant {
                user: tg("5"),
                tokens: -300,
                reason: None,
            }))
        );
        assert_eq!(
            parse("/grant 5 100 beta   bonus", None),
            Input::Command(Command::Admin(AdminCommand::Grant {
                user: Account::Bare("5".into()),
                tokens: 100,
                reason: Some("beta bonus".into()),
            }))
        );
        assert_eq!(
            parse("/setquota 42 unlimited", None),
            Input::Command(Command::Admin(AdminCommand::SetQuota {
                user: Account::Bare("42".into()),
                tokens: None
            }))
        );
        assert_eq!(
            parse("/refill telegram:7 default", None),
            Input::Command(Command::Admin(AdminCommand::Refill {
                user: tg("7"),
                tokens: None
            }))
        );
        assert_eq!(
            parse("/stats", None),
            Input::Command(Command::Admin(AdminCommand::Stats))
        );
        assert_eq!(
            parse("/release 12", None),
            Input::Command(Command::Admin(AdminCommand::Release { hold: 12 }))
        );
        assert_eq!(
            parse("/deny chat", None),
            Input::Command(Command::Admin(AdminCommand::Rule {
                subject: Subject::ThisChat,
                allowed: false,
            }))
        );
        assert_eq!(
            parse("/deny tools:chat", None),
            Input::Command(Command::Admin(AdminCommand::Rule {
                subject: Subject::Tools(Box::new(Subject::ThisChat)),
                allowed: false,
            }))
        );
        assert!(matches!(
            parse("/allow tools:tools:telegram:1", None),
            Input::Command(Command::AdminInvalid(_))
        ));
        assert_eq!(
            parse("/allow group:discord:99", None),
            Input::Command(Command::Admin(AdminCommand::Rule {
                subject: Subject::Group(UserId::new(Platform::Discord, "99")),
                allowed: true,
            }))
        );
        for bad in [
            "/grant 5",
            "/grant 5 lots",
            "/setquota 5 -1",
            "/usage a b",
            "/stats now",
            "/allow a b",
            "/release twelve",
        ] {
            match parse(bad, None) {
                Input::Command(Command::AdminUsage(usage)) => {
                    assert!(usage.starts_with('/'), "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        match parse("/grant nosuch:5 10", None) {
            Input::Command(Command::AdminInvalid(why)) => {
                assert!(why.contains("unknown platform `nosuch`"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bare_account_is_on_the_admins_platform() {
        let bare = Account::parse("123").unwrap();
        assert_eq!(
            bare.on(Some(Platform::Discord)).unwrap(),
            UserId::new(Platform::Discord, "123")
        );
        assert!(
            bare.on(None).is_err(),
            "the command line names the platform"
        );
        assert!(Account::parse("a b").is_err());
        assert_eq!(parse_amount(" 10 ", "unlimited"), Ok(Some(10)));
        assert_eq!(parse_amount("Unlimited", "unlimited"), Ok(None));
        assert!(parse_amount("-1", "default").is_err());
    }
}
