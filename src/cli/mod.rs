//! The command line: parses arguments and calls the app — `run`, `chat`, `migrate`,
//! `quota …`, `access …`, `web user …`, `stats`, `config check`. Exit codes: 0 success, 1 runtime
//! failure, 2 bad configuration or usage ([`AppError::exit_code`]).

mod payments;
mod signal;
mod table;
mod tools;
pub mod web;

pub use signal::shutdown_signal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::access::AccessService;
use crate::admin::{AdminService, Done, Operator};
use crate::app::{App, AppError, open_db, quota_service};
use crate::config::{LogFormat, RuntimeFlavor, Settings};
use crate::core::admin::{Account, AdminCommand, Subject};
use crate::core::error::{Invalid, chain};
use crate::core::event::UserId;
use crate::platform::console::{ConsoleAdapter, os_user, run_console};

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
    /// The tools a model may call, with their prices: the built-ins and each MCP server's,
    /// started as `gptbot run` would (exit 1 if a server does not connect in time).
    Tools {
        /// How long to wait for the MCP servers to connect.
        #[arg(long, default_value = "15s", value_parser = crate::config::parse_duration)]
        wait: std::time::Duration,
        /// Then call this tool (as listed, e.g. `time.get_current_time`) once and print
        /// its result as the model would get it: for trying a server before a model does.
        #[arg(long)]
        call: Option<String>,
        /// The call's arguments, a JSON object.
        #[arg(long, default_value = "{}", requires = "call")]
        args: String,
    },
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
    /// Telegram Stars payments: list them, refund one.
    Payments {
        #[command(subcommand)]
        command: payments::PaymentsCommand,
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
        CliCommand::Chat { .. } => "error",
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
    // the blocking pool. `runtime.flavor = "multi-thread"` (GPTBOT_RUNTIME) brings back one
    // worker per core.
    let mut builder = match settings.runtime.flavor {
        RuntimeFlavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
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
            let answer = crate::ops::server::ask(settings.http.listen, ready).await?;
            println!("{answer}");
            Ok(())
        }
        CliCommand::Tools { wait, call, args } => {
            tools::list(
                &settings,
                wait,
                call.as_deref().map(|name| (name, args.as_str())),
            )
            .await
        }
        CliCommand::Stats => {
            print!(
                "{}",
                table::render(admin(&settings, AdminCommand::Stats).await?)
            );
            Ok(())
        }
        CliCommand::Access { command } => {
            let command = match command {
                AccessCommand::List => AdminCommand::Rules,
                AccessCommand::Allow { subject } => AdminCommand::Rule {
                    subject: parse_subject(&subject)?,
                    allowed: true,
                },
                AccessCommand::Deny { subject } => AdminCommand::Rule {
                    subject: parse_subject(&subject)?,
                    allowed: false,
                },
            };
            print!("{}", table::render(admin(&settings, command).await?));
            Ok(())
        }
        CliCommand::Web { command } => web::run(&settings, command).await,
        CliCommand::Payments { command } => payments::run(&settings, command).await,
        CliCommand::Migrate => {
            open_db(&settings).await?;
            println!("database migrated");
            Ok(())
        }
        CliCommand::Quota { command } => {
            let command = match command {
                QuotaCommand::Show { user } => AdminCommand::Usage {
                    user: parse_user(&user)?,
                },
                QuotaCommand::Grant { user, tokens } => AdminCommand::Grant {
                    user: parse_user(&user)?,
                    tokens,
                    reason: None,
                },
                QuotaCommand::Set { user, tokens } => AdminCommand::SetQuota {
                    user: parse_user(&user)?,
                    tokens: parse_amount(&tokens, "unlimited")?,
                },
                QuotaCommand::Refill { user, tokens } => AdminCommand::Refill {
                    user: parse_user(&user)?,
                    tokens: parse_amount(&tokens, "default")?,
                },
                QuotaCommand::Holds => AdminCommand::Holds,
                QuotaCommand::Release { id } => AdminCommand::Release { hold: id },
                QuotaCommand::History { user, limit } => AdminCommand::History {
                    user: parse_user(&user)?,
                    limit,
                },
            };
            print!("{}", table::render(admin(&settings, command).await?));
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

/// Applies one operator command with the admin service, on the configured database.
async fn admin(settings: &Settings, command: AdminCommand) -> Result<Done, AppError> {
    let db = open_db(settings).await?;
    let service = AdminService::new(
        quota_service(&db, settings),
        std::sync::Arc::new(AccessService::new(db, &settings.access)),
    )
    .with_refunds(crate::app::star_payments(settings)?);
    Ok(service.apply(&Operator::cli(), command).await?)
}

/// A token amount, or the `keyword` standing for "none" (`unlimited`, `default`).
fn parse_amount(text: &str, keyword: &str) -> Result<Option<i64>, AppError> {
    Ok(crate::core::admin::parse_amount(text, keyword)?)
}

/// A rule subject: `platform:user` or `group:platform:id`.
fn parse_subject(text: &str) -> Result<Subject, AppError> {
    match Subject::parse(text)? {
        Subject::Account(account) => Ok(Subject::Account(Account::Id(account.on(None)?))),
        Subject::ThisChat => Err(AppError::Usage(Invalid(
            "`chat` means a group in a chat; name it as group:platform:id".into(),
        ))),
        group => Ok(group),
    }
}

fn parse_user(text: &str) -> Result<Account, AppError> {
    Ok(Account::Id(UserId::parse(text)?))
}
