//! The terminal adapter behind `gptbot chat`: reads lines from stdin as messages of one
//! console user and prints the answer as it streams (an "edit" prints only the new text).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::chat::Conversation;
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, ReplyTarget, SentMessage, Stage,
};
use crate::core::event::{ChatKind, Content, IncomingEvent, Platform, Sender};

pub struct ConsoleAdapter<W: Write + Send> {
    out: Mutex<ConsoleState<W>>,
    edit_interval: Duration,
}

struct ConsoleState<W> {
    out: W,
    next_id: u64,
    /// What the message being streamed has printed so far.
    printed: String,
}

impl<W: Write + Send> ConsoleAdapter<W> {
    pub fn new(out: W, edit_interval: Duration) -> ConsoleAdapter<W> {
        ConsoleAdapter {
            out: Mutex::new(ConsoleState {
                out,
                next_id: 0,
                printed: String::new(),
            }),
            edit_interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConsoleState<W>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn io(e: std::io::Error) -> AdapterError {
    AdapterError::Failed(anyhow::Error::new(e).context("writing to the terminal"))
}

#[async_trait]
impl<W: Write + Send> ChatAdapter for ConsoleAdapter<W> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 1 << 20,
            length_unit: LengthUnit::Chars,
            min_edit_interval: self.edit_interval,
            // The terminal has no flood limits: show the first words at once.
            first_message_delay: Duration::ZERO,
        }
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.printed = text.to_string();
        write!(state.out, "{text}").map_err(io)?;
        if stage == Stage::Final {
            writeln!(state.out).map_err(io)?;
            state.printed.clear();
        }
        state.out.flush().map_err(io)?;
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: id.to_string(),
        })
    }

    async fn edit(
        &self,
        _message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        let mut state = self.lock();
        let printed = std::mem::take(&mut state.printed);
        match text.strip_prefix(printed.as_str()) {
            Some(rest) => write!(state.out, "{rest}").map_err(io)?,
            // The text changed rather than grew: print it again on a fresh line.
            None => write!(state.out, "\n{text}").map_err(io)?,
        }
        if stage == Stage::Final {
            writeln!(state.out).map_err(io)?;
        } else {
            state.printed = text.to_string();
        }
        state.out.flush().map_err(io)
    }

    async fn typing(&self, _target: &ReplyTarget) -> Result<(), AdapterError> {
        Ok(())
    }
}

/// Runs the terminal conversation until end of input, `/quit` or `shutdown` fires.
pub async fn run_console<R, W>(
    conversation: &Conversation,
    user: &str,
    input: R,
    adapter: &ConsoleAdapter<W>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: Write + Send,
{
    let interactive = std::io::stdin().is_terminal();
    let mut lines = input.lines();
    let mut n: u64 = 0;
    loop {
        if interactive {
            eprint!("you> ");
        }
        let line = tokio::select! {
            line = lines.next_line() => line?,
            () = shutdown.cancelled() => None,
        };
        let Some(line) = line else { break };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(text, "/quit" | "/exit") {
            break;
        }
        n += 1;
        let event = IncomingEvent {
            platform: Platform::Console,
            chat_id: user.to_string(),
            chat_kind: ChatKind::Direct,
            group: None,
            sender: Sender {
                id: user.to_string(),
                display_name: user.to_string(),
                is_bot: false,
            },
            message_id: n.to_string(),
            content: match Content::from_typed(text, None) {
                Some(content) => content,
                None => continue,
            },
            mentioned: false,
            reply_to_bot: false,
            thread: None,
            quoted: None,
            attachments: Vec::new(),
            bot_thread: false,
            sender_manages_group: false,
        };
        // Ctrl-C stops the answer in progress too (its reservation is refunded).
        tokio::select! {
            _ = conversation.handle(&event, adapter) => {}
            () = shutdown.cancelled() => break,
        }
    }
    Ok(())
}

/// The operating-system user name, for the `console:<user>` identity.
pub fn os_user() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| "local".to_string())
}

/// The name of the account this process runs as, from its uid and `/etc/passwd` (for
/// when no `$USER` is set: cron, systemd, `env -i`); `uid<N>` for an unnamed uid.
fn account_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid{uid}")))
}
