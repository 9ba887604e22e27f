//! `gptbot web user add|passwd|remove|list`: the web front's accounts. A password comes
//! from a prompt that does not echo it, or with `--password-stdin` from the first line
//! of standard input (for scripts); it is never an argument, where `ps` would show it.

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;
use secrecy::SecretString;

use crate::accounts::WebAccounts;
use crate::app::{AppError, open_db};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Manage the web front's accounts (user web:<name> in quotas and access rules).
    User {
        #[command(subcommand)]
        command: WebUserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebUserCommand {
    /// Create an account.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an account's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account (its balance and ledger stay). Its name is kept from sign-up,
    /// which would hand a stranger its balance and history, unless --forget.
    Remove {
        name: String,
        /// Free the name (also of an account removed before): whoever signs up with it
        /// next gets its balance and history.
        #[arg(long)]
        forget: bool,
    },
    /// List the accounts.
    List,
}

pub async fn run(settings: &Settings, command: WebCommand) -> Result<(), AppError> {
    let WebCommand::User { command } = command;
    let accounts = WebAccounts::new(open_db(settings).await?);
    match command {
        WebUserCommand::Add {
            name,
            password_stdin,
        } => {
            let password = password(password_stdin)?;
            let (name, _) = accounts.add(&name, &password).await?;
            println!("web user {name} added (quota user web:{name})");
        }
        WebUserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = password(password_stdin)?;
            accounts.set_password(&name, &password).await?;
            println!("password of {} changed", name.trim().to_ascii_lowercase());
        }
        WebUserCommand::Remove { name, forget } => {
            accounts.remove(&name, forget).await?;
            let name = name.trim().to_ascii_lowercase();
            if forget {
                println!("web user {name} removed; the name is free to sign up with");
            } else {
                println!("web user {name} removed; sign-up keeps refusing the name");
            }
        }
        WebUserCommand::List => {
            for (name, created) in accounts.list().await? {
                let since = chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                println!("{name} (since {since})");
            }
        }
    }
    Ok(())
}

fn password(from_stdin: bool) -> Result<SecretString, AppError> {
    let stdin = std::io::stdin();
    let interactive = !from_stdin && stdin.is_terminal();
    if !from_stdin && !interactive {
        return Err(usage(
            "standard input is not a terminal: pass --password-stdin to read the password from it",
        ));
    }
    let read = |prompt: &str| -> Result<String, AppError> {
        if interactive {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
            echo(false);
        }
        let mut line = String::new();
        let result = stdin.lock().read_line(&mut line);
        if interactive {
            echo(true);
            eprintln!();
        }
        result.map_err(|e| usage(&format!("could not read the password: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = read("Password: ")?;
    if interactive && read("Again: ")? != first {
        return Err(usage("the two passwords differ"));
    }
    Ok(SecretString::from(first))
}

/// Turns the terminal's echo off or on (`stty`), so a typed password is not shown.
fn echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

fn usage(message: &str) -> AppError {
    AppError::Usage(crate::core::error::Invalid(message.to_string()))
}
