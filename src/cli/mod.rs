//! The command line: parses arguments and calls the app — `run`, `chat`, `migrate`,
//! `quota …`, `access …`, `web user …`, `stats`, `config check`. Exit codes: 0 success, 1 runtime
//! failure, 2 bad configuration or usage ([`AppError::exit_code`]).

mod signal;
pub mod web;

pub use signal::shutdown_signal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::access::AccessService;
use crate::app::{App, AppError, open_db, quota_service};
use crate::config::{LogFormat, Settings};
use crate::core::error::chain;
use crate::core::event::UserId;
use crate::platform::console::{ConsoleAdapter, os_user, run_console};
use crate::quota::QuotaService;

#[derive(Debug, Parser)]
#[command(
    name = "gptbot",
    version,
    about = "An LLM chat bot for Telegram, Discord and the terminal"
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format (default: log.format from the configuration).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Start every configured chat platform.
    Run,
    /// Talk to the bot in this terminal (as user console:<your OS user>).
    Chat {
        /// Console user name (default: the OS user).
        #[arg(long)]
        user: Option<String>,
        /// Show logs at `log.level` on the terminal (by default only errors, so log lines
        /// never split an answer; or set `log.file`).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Create or update the quota database schema.
    Migrate,
    /// Inspect or change token balances.
    Quota {
        #[command(subcommand)]
        command: QuotaCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Allow or deny users and groups (as /allow and /deny do).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Users, tokens used today and in total, requests and errors.
    Stats,
    /// Ask the running bot's operations listener (`http.listen`) whether it is alive: exit
    /// 0 if so, 1 otherwise (for container and service health checks).
    Health {
        /// Ask `/readyz` instead: the database, Redis and the platforms answer.
        #[arg(long)]
        ready: bool,
    },
    /// Telegram tools for operators.
    Telegram {
        #[command(subcommand)]
        command: TelegramCommand,
    },
    /// The web front's accounts: `gptbot web user add <name>`.
    Web {
        #[command(subcommand)]
        command: web::WebCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TelegramCommand {
    /// The webhook Telegram posts updates to. `gptbot run` registers it when Telegram
    /// does not have it and never deletes it (a stopping replica must not unregister the
    /// others); these commands do it by hand.
    Webhook {
        #[command(subcommand)]
        action: WebhookCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// What Telegram has: URL, pending updates, last delivery error.
    Info,
    /// Register telegram.webhook_url with telegram.webhook_secret now (e.g. after
    /// changing the secret).
    Set,
    /// Unregister the webhook (the bot then receives nothing until it is set again or
    /// runs in polling mode).
    Delete {
        /// Also drop the updates Telegram is holding for the bot.
        #[arg(long)]
        drop_pending_updates: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Let a user (`telegram:123`) or a group (`group:telegram:-100123`,
    /// `group:discord:<guild id>`) use the bot.
    Allow { subject: String },
    /// Stop a user or a group from using the bot.
    Deny { subject: String },
    /// List the allow and deny decisions made so far.
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Show a user's balance, e.g. `gptbot quota show telegram:12345`.
    Show { user: String },
    /// Add tokens to a user's balance (negative to take away).
    Grant {
        user: String,
        #[arg(allow_negative_numbers = true)]
        tokens: i64,
    },
    /// Set what a user has left to exactly N tokens, or `unlimited`.
    Set { user: String, tokens: String },
    /// Set a user's own refill amount, or `default` for the plan's.
    Refill { user: String, tokens: String },
    /// List open holds (tokens reserved for answers in progress): id, user, tokens, age
    /// and when the lease runs out.
    Holds,
    /// Return one open hold's tokens to its user now (a settle arriving later is still
    /// charged, from what is left).
    Release { id: i64 },
    /// Show where a user's tokens went, newest last.
    History {
        user: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted.
    Check {
        /// Also ask the model server: connection, key, model name, tokenizer, and one
        /// one-token answer.
        #[arg(long)]
        probe: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Re-run by the bot to read one PDF under rlimits (see `chat::pdf`): no
    // configuration, no logging, no runtime.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(crate::chat::pdf::CHILD_COMMAND) {
        return ExitCode::from(crate::chat::pdf::child_main(&args[1..]));
    }
    let cli = Cli::parse();
    let settings = match Settings::load_from_process(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let format = cli.log_format.unwrap_or(settings.log.format);
    // Only the long-running server logs at `log.level` by default; one-shot commands
    // keep the terminal for their own output.
    let file = settings.log.file.as_deref();
    let level = match &cli.command {
        CliCommand::Run | CliCommand::Chat { verbose: true, .. } => settings.log.level.as_str(),
        _ if file.is_some() => settings.log.level.as_str(),
        // The conversation owns the terminal: a warning must not split an answer.
        CliCommand::Chat { .. } => "error,async_openai=off",
        _ => "warn",
    };
    // Every HTTP client of any command uses it (reqwest panics without one).
    crate::app::install_crypto_provider();
    if let Err(e) = crate::telemetry::init(format, level, file) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }

    // One scheduler thread by default: the bot waits on the network, and with two
    // workers most of its CPU went on waking one another for each streamed token
    // (BENCHMARKS.md). CPU-heavy steps (PDFs, long token counts, password hashes) run on
    // the blocking pool. GPTBOT_RUNTIME=multi-thread brings back one worker per core.
    let mut builder = match std::env::var("GPTBOT_RUNTIME").as_deref() {
        Ok("multi-thread") => tokio::runtime::Builder::new_multi_thread(),
        Ok("current-thread" | "") | Err(std::env::VarError::NotPresent) => {
            tokio::runtime::Builder::new_current_thread()
        }
        Ok(other) => {
            eprintln!(
                "error: GPTBOT_RUNTIME is `{other}`; it takes `current-thread` (the default) or `multi-thread`"
            );
            return ExitCode::from(2);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!(
                "error: GPTBOT_RUNTIME is not valid Unicode; it takes `current-thread` or `multi-thread`"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %chain(&e), "gptbot failed");
            eprintln!("error: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn execute(command: CliCommand, settings: Settings) -> Result<(), AppError> {
    match command {
        CliCommand::Config {
            command: ConfigCommand::Check { probe },
        } => {
            print!("{}", settings.redacted_toml());
            eprintln!("configuration OK");
            if probe {
                crate::llm::probe::report(&settings).await?;
            }
            Ok(())
        }
        CliCommand::Health { ready } => {
            let answer = crate::ops::server::ask(settings.http.listen, ready)
                .await
                .map_err(AppError::Unhealthy)?;
            println!("{answer}");
            Ok(())
        }
        CliCommand::Stats => {
            let quota = open_quota(&settings).await?;
            let s = quota.stats().await?;
            println!("users {}", s.users);
            println!("tokens_used_today {}", s.used_today);
            println!("tokens_used_total {}", s.used);
            println!("requests_today {}", s.requests_today);
            println!("requests_total {}", s.requests);
            println!("errors_today {}", s.errors_today);
            println!("errors_total {}", s.errors);
            Ok(())
        }
        CliCommand::Access { command } => {
            let access = AccessService::new(open_db(&settings).await?, &settings.access);
            let (subject, allowed) = match command {
                AccessCommand::List => {
                    for (subject, allowed, by) in access.list_rules().await? {
                        let decision = if allowed { "allowed" } else { "denied" };
                        println!("{subject} {decision} (by {by})");
                    }
                    return Ok(());
                }
                AccessCommand::Allow { subject } => (subject, true),
                AccessCommand::Deny { subject } => (subject, false),
            };
            let subject = parse_subject(&subject)?;
            access.set_rule(&subject, allowed, "cli").await?;
            println!("{subject} {}", if allowed { "allowed" } else { "denied" });
            Ok(())
        }
        CliCommand::Web { command } => web::run(&settings, command).await,
        CliCommand::Migrate => {
            open_db(&settings).await?;
            println!("database migrated");
            Ok(())
        }
        CliCommand::Quota {
            command: QuotaCommand::Holds,
        } => {
            let quota = open_quota(&settings).await?;
            let now = chrono::Utc::now().timestamp_millis();
            println!(
                "{:>8} {:<28} {:>8} {:>8} {:>10}  owner",
                "id", "user", "tokens", "age", "expires in"
            );
            for h in quota.holds().await? {
                let user = format!("{}:{}", h.platform, h.user_id);
                let age = format!("{}s", (now - h.created_ms).max(0) / 1000);
                let expires = match h.expires_ms - now {
                    left if left > 0 => format!("{}s", left / 1000),
                    _ => "expired".into(),
                };
                println!(
                    "{:>8} {user:<28} {:>8} {age:>8} {expires:>10}  {}",
                    h.id, h.amount, h.owner
                );
            }
            Ok(())
        }
        CliCommand::Quota {
            command: QuotaCommand::Release { id },
        } => {
            let quota = open_quota(&settings).await?;
            if !quota.release(id).await? {
                return Err(AppError::Quota(crate::quota::QuotaError::Invalid(format!(
                    "no open hold with id {id} (see `gptbot quota holds`)"
                ))));
            }
            println!("hold {id} released: its tokens are back in the balance");
            Ok(())
        }
        CliCommand::Quota {
            command: QuotaCommand::History { user, limit },
        } => {
            let quota = open_quota(&settings).await?;
            let user = parse_user(&user)?;
            let entries = quota.history(&user, limit.max(1)).await?;
            println!(
                "{:<20} {:<8} {:>10} {:>10} {:>10} {:>10} {:>10}  model",
                "time (UTC)", "kind", "granted", "remaining", "reserved", "used", "balance"
            );
            for e in entries {
                let at = chrono::DateTime::from_timestamp(e.at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| e.at.to_string());
                println!(
                    "{at:<20} {:<8} {:>+10} {:>+10} {:>+10} {:>+10} {:>10}  {}",
                    e.kind,
                    e.d_granted,
                    e.d_remaining,
                    e.d_reserved,
                    e.d_used,
                    e.remaining,
                    e.note.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        CliCommand::Quota { command } => {
            let quota = open_quota(&settings).await?;
            let mut today = None;
            let (user, balance) = match command {
                QuotaCommand::Show { user } => {
                    let user = parse_user(&user)?;
                    let balance = quota.balance(&user).await?;
                    today = Some(quota.used_today(&user).await?);
                    (user, balance)
                }
                QuotaCommand::Grant { user, tokens } => {
                    let user = parse_user(&user)?;
                    let balance = quota.grant(&user, tokens).await?;
                    (user, balance)
                }
                QuotaCommand::Set { user, tokens } => {
                    let user = parse_user(&user)?;
                    let tokens = parse_amount(&tokens, "unlimited")?;
                    let balance = quota.set_quota(&user, tokens).await?;
                    (user, balance)
                }
                QuotaCommand::Refill { user, tokens } => {
                    let user = parse_user(&user)?;
                    let tokens = parse_amount(&tokens, "default")?;
                    let balance = quota.set_refill(&user, tokens).await?;
                    (user, balance)
                }
                QuotaCommand::History { .. }
                | QuotaCommand::Holds
                | QuotaCommand::Release { .. } => {
                    unreachable!("handled above")
                }
            };
            println!(
                "{user}: remaining {} used {} reserved {} granted {} requests {}{}{}",
                balance.remaining,
                balance.used,
                balance.reserved,
                balance.granted,
                balance.requests,
                if balance.unlimited {
                    " (unlimited)"
                } else {
                    ""
                },
                balance
                    .refill_tokens
                    .map(|n| format!(" (own refill {n})"))
                    .unwrap_or_default(),
            );
            if let Some(today) = today {
                println!("{user}: used today {today}");
            }
            Ok(())
        }
        CliCommand::Telegram {
            command: TelegramCommand::Webhook { action },
        } => {
            use crate::platform::telegram::webhook::{WebhookAction, operate};
            let action = match action {
                WebhookCommand::Info => WebhookAction::Info,
                WebhookCommand::Set => WebhookAction::Set,
                WebhookCommand::Delete {
                    drop_pending_updates,
                } => WebhookAction::Delete {
                    drop_pending: drop_pending_updates,
                },
            };
            print!("{}", operate(&settings.telegram, action).await?);
            Ok(())
        }
        CliCommand::Chat { user, .. } => {
            let app = App::build(settings).await?;
            let user = user.unwrap_or_else(os_user);
            let adapter =
                ConsoleAdapter::new(std::io::stdout(), app.settings.chat.console_edit_interval);
            let shutdown = shutdown_signal();
            app.quota.spawn_keeper(shutdown.clone());
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            run_console(&app.conversation, &user, stdin, &adapter, shutdown)
                .await
                .map_err(AppError::Terminal)
        }
        CliCommand::Run => {
            // Say so before opening anything: nothing would be served.
            App::check_platforms(&settings)?;
            // Listening from the start: a signal while the database migrates or a
            // platform connects stops start-up and exits 0.
            let shutdown = shutdown_signal();
            let app = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    tracing::info!("stopped during start-up");
                    return Ok(());
                }
                app = App::build(settings) => app?,
            };
            app.run_until_stopped(shutdown).await
        }
    }
}

/// Opens the database and the quota ledger, for the one-shot commands.
async fn open_quota(settings: &Settings) -> Result<QuotaService, AppError> {
    Ok(quota_service(&open_db(settings).await?, settings))
}

/// A token amount, or the `keyword` standing for "none" (`unlimited`, `default`).
fn parse_amount(text: &str, keyword: &str) -> Result<Option<i64>, AppError> {
    crate::quota::parse_amount(text, keyword).map_err(|message| {
        AppError::Config(crate::config::ConfigError::Invalid {
            key: "tokens",
            message,
        })
    })
}

/// A rule subject: `platform:user` or `group:platform:id`.
fn parse_subject(text: &str) -> Result<String, AppError> {
    crate::access::parse_subject(text).map_err(|message| {
        AppError::Config(crate::config::ConfigError::Invalid {
            key: "user",
            message,
        })
    })
}

fn parse_user(text: &str) -> Result<UserId, AppError> {
    UserId::parse(text).map_err(|message| {
        AppError::Config(crate::config::ConfigError::Invalid {
            key: "user",
            message,
        })
    })
}
