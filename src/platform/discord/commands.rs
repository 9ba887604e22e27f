//! The slash commands Discord shows, as registered at start-up. Admin commands are
//! hidden from members without the Administrator permission.

use std::collections::BTreeMap;

use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption, Permissions};

use crate::config::{ModelChoice, Persona};

/// Discord allows at most this many choices per option.
const MAX_CHOICES: usize = 25;

/// The slash commands, as registered: /model offers the configured models as choices,
/// /persona is there only when personas are configured, /buy only when packs are sold.
pub fn slash_commands(
    models: &[ModelChoice],
    personas: &BTreeMap<String, Persona>,
    tools: bool,
    payments: &crate::config::PaymentSettings,
) -> Vec<CreateCommand> {
    let mut model_option = CreateCommandOption::new(
        CommandOptionType::String,
        "name",
        "The model to use from now on (leave empty to see them)",
    );
    for model in models.iter().take(MAX_CHOICES) {
        model_option = model_option.add_string_choice(model.label(), &model.name);
    }
    let mut commands = vec![
        CreateCommand::new("chat")
            .description("Ask the model something")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "prompt", "What to ask")
                    .required(true),
            ),
        CreateCommand::new("reset").description("Forget this conversation's history"),
        CreateCommand::new("cancel").description("Stop the answer in progress"),
        CreateCommand::new("retry").description("Answer your last message again"),
        CreateCommand::new("link")
            .description("Share one token balance with your account on another platform")
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "code",
                "The code /link gave you on the other platform (leave empty to get one)",
            )),
        CreateCommand::new("unlink").description("Stop sharing your token balance"),
        CreateCommand::new("quota").description("Show your remaining and used tokens"),
        CreateCommand::new("system")
            .description("Show or set this conversation's system prompt")
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "prompt",
                "The new system prompt, or `reset` for the default",
            )),
        CreateCommand::new("model")
            .description("Show or choose the model that answers")
            .add_option(model_option),
        // Everyone's own usage; an admin naming a user gets that user's balance.
        CreateCommand::new("usage")
            .description("Your tokens used per day (admins: a user's balance and usage)")
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "user",
                "Admins only: a Discord user id or a platform:id (leave empty for yours)",
            )),
        // A server's token wallet, funded and ruled by its managers and the bot's admins.
        CreateCommand::new("budget")
            .description("Show or fund this server's token wallet")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "action",
                    "What to do (leave empty to see the wallet)",
                )
                .add_string_choice("show the wallet", "show")
                .add_string_choice("add tokens", "add")
                .add_string_choice("set each member's tokens per day", "member-limit")
                .add_string_choice("when it cannot pay: own | refuse", "when-empty"),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::String,
                "value",
                "Tokens to add, tokens per day (or off), or own / refuse",
            )),
    ];
    if payments.enabled {
        let mut option = CreateCommandOption::new(
            CommandOptionType::String,
            "pack",
            "The pack to buy (leave empty to see them)",
        );
        for pack in payments.packs.iter().take(MAX_CHOICES) {
            option = option.add_string_choice(
                format!(
                    "{} — {} tokens for {} Stars",
                    pack.name, pack.tokens, pack.stars
                ),
                &pack.name,
            );
        }
        commands.push(
            CreateCommand::new("buy")
                .description("Buy tokens with Telegram Stars")
                .add_option(option),
        );
    }
    if tools {
        commands.push(
            CreateCommand::new("tools")
                .description("Show the tools the model may use, and their prices"),
        );
    }
    if !personas.is_empty() {
        let mut option = CreateCommandOption::new(
            CommandOptionType::String,
            "name",
            "The persona to use, or `off` (leave empty to see them)",
        );
        for (name, persona) in personas.iter().take(MAX_CHOICES - 1) {
            option = option.add_string_choice(persona.label.as_deref().unwrap_or(name), name);
        }
        option = option.add_string_choice("No persona", "off");
        commands.push(
            CreateCommand::new("persona")
                .description("Show or choose a persona for this conversation")
                .add_option(option),
        );
    }
    commands.extend([
        admin_command(
            "grant",
            "Add tokens to a user's balance (negative takes away)",
        )
        .add_option(user_option())
        .add_option(
            CreateCommandOption::new(CommandOptionType::Integer, "tokens", "How many tokens")
                .required(true),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::String,
            "reason",
            "Why, for the audit log (optional)",
        )),
        admin_command("setquota", "Set what a user has left")
            .add_option(user_option())
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "tokens",
                    "A number of tokens, or `unlimited`",
                )
                .required(true),
            ),
        admin_command(
            "stats",
            "Users, tokens today and in total, requests, errors",
        ),
        admin_command("allow", "Let a user (or `chat`: this server) use the bot")
            .add_option(user_option()),
        admin_command(
            "deny",
            "Stop a user (or `chat`: this server) from using the bot",
        )
        .add_option(user_option()),
    ]);
    commands
}

/// Admin commands are hidden from server members without the Administrator permission;
/// the bot checks `access.admins` as well.
fn admin_command(name: &str, description: &str) -> CreateCommand {
    CreateCommand::new(name)
        .description(description)
        .default_member_permissions(Permissions::ADMINISTRATOR)
}

fn user_option() -> CreateCommandOption {
    CreateCommandOption::new(
        CommandOptionType::String,
        "user",
        "A Discord user id, a platform:id (telegram:123), or `chat`",
    )
    .required(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_match_the_core_commands() {
        let names = |personas: &BTreeMap<String, Persona>| -> Vec<String> {
            slash_commands(
                &[ModelChoice::plain("a")],
                personas,
                false,
                &Default::default(),
            )
            .into_iter()
            .map(|c| {
                serde_json::to_value(c).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
        };
        assert_eq!(
            names(&BTreeMap::new()),
            [
                "chat", "reset", "cancel", "retry", "link", "unlink", "quota", "system", "model",
                "usage", "budget", "grant", "setquota", "stats", "allow", "deny"
            ]
        );
        let mut personas = BTreeMap::new();
        personas.insert(
            "pirate".to_string(),
            Persona {
                prompt: "Arr".into(),
                label: None,
            },
        );
        assert!(names(&personas).contains(&"persona".to_string()));
    }
}
