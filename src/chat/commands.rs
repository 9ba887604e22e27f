//! Parsing of what a user typed into a [`Input`]: pure, no I/O, so every adapter and the
//! tests share one definition of the command language.

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
    System(SystemArg),
    /// `/ask <text>` (or `/chat <text>`): a prompt given as a command, as groups need.
    Ask(String),
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
    ("ask", "Ask the model something (useful in groups)"),
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
        "system" => Command::System(match args {
            "" => SystemArg::Show,
            a if a.eq_ignore_ascii_case("reset") => SystemArg::Reset,
            a => SystemArg::Set(a.to_string()),
        }),
        "ask" | "chat" => Command::Ask(args.to_string()),
        _ => Command::Unknown(name.to_string()),
    };
    Input::Command(command)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse("/quota", None), Input::Command(Command::Quota));
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
