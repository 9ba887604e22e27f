//! `[payments]`: token packs users buy with Telegram Stars (`/buy`), granted into the
//! same ledger as everything else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// `/buy` sells the packs; off, it says the bot sells nothing.
    pub enabled: bool,
    /// `[[payments.packs]]`, listed in this order.
    pub packs: Vec<Pack>,
}

/// One thing to buy: `tokens` for `stars` (Telegram Stars, currency `XTR`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// What `/buy <name>` names: lowercase letters, digits, `-` and `_`.
    pub name: String,
    pub stars: i64,
    pub tokens: i64,
}

impl PaymentSettings {
    pub fn pack(&self, name: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.name == name)
    }

    pub(super) fn validate(&self) -> Result<(), super::ConfigError> {
        let invalid =
            |key: &'static str, message: String| super::ConfigError::Invalid { key, message };
        if self.enabled && self.packs.is_empty() {
            return Err(invalid(
                "payments.packs",
                "payments are enabled but no pack is configured ([[payments.packs]])".into(),
            ));
        }
        for (i, pack) in self.packs.iter().enumerate() {
            let name_ok = !pack.name.is_empty()
                && pack.name.len() <= 32
                && pack.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                return Err(invalid(
                    "payments.packs.name",
                    format!(
                        "pack {} is named {:?}: use 1 to 32 lowercase letters, digits, - and _",
                        i + 1,
                        pack.name
                    ),
                ));
            }
            if self.packs[..i].iter().any(|p| p.name == pack.name) {
                return Err(invalid(
                    "payments.packs.name",
                    format!("two packs are named {:?}", pack.name),
                ));
            }
            // Telegram takes 1 to 10,000 Stars for one invoice.
            if !(1..=10_000).contains(&pack.stars) {
                return Err(invalid(
                    "payments.packs.stars",
                    format!(
                        "pack {:?} costs {} Stars: Telegram takes 1 to 10000",
                        pack.name, pack.stars
                    ),
                ));
            }
            if pack.tokens < 1 {
                return Err(invalid(
                    "payments.packs.tokens",
                    format!("pack {:?} must give at least 1 token", pack.name),
                ));
            }
        }
        Ok(())
    }
}
