//! Who administers a group, as Telegram says (`getChatMember`): its owner and its
//! administrators may fund the group's token wallet and set its rules.

use teloxide::prelude::*;
use teloxide::types::UserId as TgUserId;

use super::adapter::{TelegramAdapter, adapter_error, chat_id, status_of};
use crate::core::adapter::AdapterError;

/// True when `user` is `group`'s owner or one of its administrators.
pub(super) async fn is_admin(
    adapter: &TelegramAdapter,
    group: &str,
    user: &str,
) -> Result<bool, AdapterError> {
    let user = user
        .parse::<u64>()
        .map(TgUserId)
        .map_err(|_| AdapterError::Failed(anyhow::anyhow!("`{user}` is not a Telegram user id")))?;
    let member = adapter.bot.get_chat_member(chat_id(group)?, user).await;
    crate::core::metrics::platform_call("telegram", "getChatMember", status_of(&member));
    Ok(member.map_err(adapter_error)?.kind.is_privileged())
}
