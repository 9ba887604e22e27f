//! The command language: what a user can ask of the bot besides a chat turn, and the
//! parsing of typed text into it. Pure, no I/O: adapters parse at the edge (Telegram
//! and terminal text) or build a [`Command`] directly (Discord slash options). The
//! operators' commands are in [`super::admin`].

use super::admin::parse_admin;
pub use super::admin::{ADMIN_COMMANDS, Account, AdminCommand, Subject, admin_usage};

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Plain text for the model.
    Text(String),
    Command(Command),
    /// A command addressed to another bot (`/start@otherbot`): not ours to answer.
    ForAnotherBot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Help,
    Reset,
    Quota,
    /// Stop the answer in progress.
    Cancel,
    /// `/link` asks for a code; `/link CODE` (on the other platform) joins the balances.
    Link(Option<String>),
    Unlink,
    System(SystemArg),
    /// `/ask <text>` (or `/chat <text>`): a prompt given as a command, as groups need.
    Ask(String),
    /// `/retry`: the last message of this conversation answered again, the new answer
    /// taking the old one's place in the history.
    Retry,
    /// `/model` shows the models on offer; `/model <name>` picks one for this conversation.
    Model(Option<String>),
    /// `/persona` lists the personas; `/persona <name>` uses one, `/persona off` none.
    Persona(Option<String>),
    /// `/tools`: the tools the model may call, with their prices.
    Tools,
    /// `/buy` lists the token packs on sale; `/buy <pack>` sends the invoice.
    Buy(Option<String>),
    /// `/budget …`: a group's wallet (see [`super::budget`]).
    Budget(super::budget::BudgetOp),
    /// `/usage`: one's own tokens per day over the last 14 days (`/usage <user>` is the
    /// admins').
    Usage,
    /// An admin command (checked against `access.admins` before it runs).
    Admin(AdminCommand),
    /// An admin command with wrong arguments: the usage line to show.
    AdminUsage(&'static str),
    /// An admin command naming an account or a group that is not one, and why.
    AdminInvalid(String),
    /// Anything else starting with `/`; the name is kept for the helpful answer.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemArg {
    Show,
    Reset,
    Set(String),
}

/// The commands shown in /help and registered with platforms, with their descriptions.
pub const COMMANDS: &[(&str, &str)] = &[
    ("start", "Start talking to the bot"),
    ("help", "Show what the bot can do"),
    ("reset", "Forget this conversation's history"),
    ("quota", "Show your remaining and used tokens"),
    ("system", "Show or set this conversation's system prompt"),
    ("cancel", "Stop the answer in progress"),
    ("retry", "Answer your last message again"),
    (
        "link",
        "Share one token balance with your account on another platform",
    ),
    ("unlink", "Stop sharing your token balance"),
    ("ask", "Ask the model something (useful in groups)"),
    ("model", "Show or choose the model that answers"),
    ("persona", "Show or choose a persona for this conversation"),
    (
        "tools",
        "Show the tools the model may use, and their prices",
    ),
    ("usage", "Show your tokens used per day"),
    ("buy", "Buy tokens with Telegram Stars"),
    ("budget", "Show or fund this group's token wallet"),
];

/// Parses `text`. `bot_username` (without `@`) lets `/cmd@name` be told apart from a
/// command meant for another bot in the same group.
pub fn parse(text: &str, bot_username: Option<&str>) -> Input {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Input::Text(trimmed.to_string());
    };
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let (name, addressee) = match head.split_once('@') {
        Some((name, to)) => (name, Some(to)),
        None => (head, None),
    };
    if let (Some(to), Some(me)) = (addressee, bot_username)
        && !to.eq_ignore_ascii_case(me.trim_start_matches('@'))
    {
        return Input::ForAnotherBot;
    }
    if name.is_empty() {
        // A lone "/" or "/ text" is not a command; let the model see it.
        return Input::Text(trimmed.to_string());
    }
    let command = match name.to_ascii_lowercase().as_str() {
        "start" => Command::Start,
        "help" => Command::Help,
        "reset" | "new" | "clear" => Command::Reset,
        "quota" | "balance" => Command::Quota,
        "cancel" | "stop" => Command::Cancel,
        "link" => Command::Link((!args.is_empty()).then(|| args.to_string())),
        "unlink" => Command::Unlink,
        "system" => Command::System(match args {
            "" => SystemArg::Show,
            a if a.eq_ignore_ascii_case("reset") => SystemArg::Reset,
            a => SystemArg::Set(a.to_string()),
        }),
        "ask" | "chat" => Command::Ask(args.to_string()),
        "retry" | "regenerate" => Command::Retry,
        "model" | "models" => Command::Model((!args.is_empty()).then(|| args.to_string())),
        "persona" | "personas" => Command::Persona((!args.is_empty()).then(|| args.to_string())),
        "tools" => Command::Tools,
        "usage" if args.is_empty() => Command::Usage,
        "budget" | "wallet" => Command::Budget(super::budget::parse_budget(args)),
        "buy" | "topup" => Command::Buy((!args.is_empty()).then(|| args.to_ascii_lowercase())),
        other => parse_admin(other, args).unwrap_or_else(|| Command::Unknown(name.to_string())),
    };
    Input::Command(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buy_names_a_pack_in_lowercase() {
        assert_eq!(parse("/buy", None), Input::Command(Command::Buy(None)));
        assert_eq!(
            parse("/buy Small", None),
            Input::Command(Command::Buy(Some("small".into())))
        );
        assert_eq!(
            parse("/topup large", None),
            Input::Command(Command::Buy(Some("large".into())))
        );
    }

    #[test]
    fn plain_text_is_text() {
        assert_eq!(
            parse("  hello there ", None),
            Input::Text("hello there".into())
        );
        assert_eq!(parse("/", None), Input::Text("/".into()));
        assert_eq!(
            parse("what is 1/2?", None),
            Input::Text("what is 1/2?".into())
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse("/start", None), Input::Command(Command::Start));
        assert_eq!(parse("/HELP", None), Input::Command(Command::Help));
        assert_eq!(parse("/reset", None), Input::Command(Command::Reset));
        assert_eq!(parse("/retry", None), Input::Command(Command::Retry));
        assert_eq!(parse("/regenerate", None), Input::Command(Command::Retry));
        assert_eq!(parse("/quota", None), Input::Command(Command::Quota));
        assert_eq!(parse("/tools", None), Input::Command(Command::Tools));
        assert_eq!(
            parse("/system", None),
            Input::Command(Command::System(SystemArg::Show))
        );
        assert_eq!(
            parse("/system Reset", None),
            Input::Command(Command::System(SystemArg::Reset))
        );
        assert_eq!(
            parse("/system You are a pirate.\nAlways.", None),
            Input::Command(Command::System(SystemArg::Set(
                "You are a pirate.\nAlways.".into()
            )))
        );
        assert_eq!(
            parse("/ask why?", None),
            Input::Command(Command::Ask("why?".into()))
        );
        assert_eq!(parse("/model", None), Input::Command(Command::Model(None)));
        assert_eq!(
            parse("/model  gpt-4o ", None),
            Input::Command(Command::Model(Some("gpt-4o".into())))
        );
        assert_eq!(
            parse("/persona off", None),
            Input::Command(Command::Persona(Some("off".into())))
        );
        assert_eq!(
            parse("/frobnicate x", None),
            Input::Command(Command::Unknown("frobnicate".into()))
        );
    }

    #[test]
    fn addressed_commands() {
        assert_eq!(
            parse("/reset@GptBot", Some("gptbot")),
            Input::Command(Command::Reset)
        );
        assert_eq!(
            parse("/reset@otherbot", Some("gptbot")),
            Input::ForAnotherBot
        );
        assert_eq!(
            parse("/reset@whoever", None),
            Input::Command(Command::Reset)
        );
    }
}
