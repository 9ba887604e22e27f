//! What users may choose per conversation: the models (`[[model.available]]`, each with
//! its price in ledger tokens and whether it takes images) and the personas
//! (`[personas.<name>]`). Checked at load time; every error names its key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Telegram carries a button's command in at most 64 bytes of `callback_data`; the
/// longest command a button sends is `/persona <name>`.
pub const MAX_CHOICE_NAME_BYTES: usize = 55;

/// One model users may pick with `/model`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChoice {
    /// Sent to the server as `model`.
    pub name: String,
    /// Shown to users; the name when unset.
    #[serde(default)]
    pub label: Option<String>,
    /// Ledger tokens charged per model token (a model ten times dearer: 10.0).
    #[serde(default = "one")]
    pub price: f64,
    /// Accepts images.
    #[serde(default)]
    pub vision: bool,
    /// May call the configured tools (`[tools]`).
    #[serde(default)]
    pub tools: bool,
}

fn one() -> f64 {
    1.0
}

impl ModelChoice {
    /// The entry for a model that is not in the list (the default `model.name` when
    /// no list is configured): price 1, no images.
    pub fn plain(name: &str) -> ModelChoice {
        ModelChoice {
            name: name.to_string(),
            label: None,
            price: 1.0,
            vision: false,
            tools: false,
        }
    }

    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// `tokens` model tokens in ledger tokens, rounded up so a dear model is never
    /// charged less than it costs.
    pub fn ledger_tokens(&self, tokens: i64) -> i64 {
        if self.price == 1.0 {
            tokens
        } else {
            (tokens as f64 * self.price).ceil() as i64
        }
    }
}

/// A ready-made system prompt users may switch to with `/persona <name>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub prompt: String,
    #[serde(default)]
    pub label: Option<String>,
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// A name users type after a command: a word, short enough for a button.
fn check_name(key: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
        return Err(invalid(
            key,
            format!("`{name}` must be one word, without spaces"),
        ));
    }
    if name.len() > MAX_CHOICE_NAME_BYTES {
        return Err(invalid(
            key,
            format!(
                "`{name}` is longer than {MAX_CHOICE_NAME_BYTES} bytes (Telegram's buttons carry at most 64)"
            ),
        ));
    }
    Ok(())
}

pub(super) fn validate_models(models: &[ModelChoice]) -> Result<(), ConfigError> {
    for (i, model) in models.iter().enumerate() {
        check_name("model.available.name", &model.name)?;
        if models[..i].iter().any(|m| m.name == model.name) {
            return Err(invalid(
                "model.available.name",
                format!("`{}` is listed twice", model.name),
            ));
        }
        if !(model.price.is_finite() && model.price > 0.0 && model.price <= 1_000.0) {
            return Err(invalid(
                "model.available.price",
                format!(
                    "{} (for `{}`) must be more than 0 and at most 1000",
                    model.price, model.name
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_personas(personas: &BTreeMap<String, Persona>) -> Result<(), ConfigError> {
    for (name, persona) in personas {
        check_name("personas", name)?;
        if name.eq_ignore_ascii_case("off") {
            return Err(invalid(
                "personas",
                "`off` is taken: `/persona off` goes back to the default".into(),
            ));
        }
        if persona.prompt.trim().is_empty() {
            return Err(invalid(
                "personas.prompt",
                format!("the persona `{name}` has an empty prompt"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_up_and_names_are_checked() {
        let dear = ModelChoice {
            price: 2.5,
            ..ModelChoice::plain("big")
        };
        assert_eq!(dear.ledger_tokens(3), 8);
        assert_eq!(ModelChoice::plain("x").ledger_tokens(7), 7);
        assert!(validate_models(&[ModelChoice::plain("a"), ModelChoice::plain("a")]).is_err());
        assert!(validate_models(&[ModelChoice::plain("two words")]).is_err());
        assert!(
            validate_models(&[ModelChoice {
                price: 0.0,
                ..ModelChoice::plain("free")
            }])
            .is_err()
        );
        let long = "x".repeat(MAX_CHOICE_NAME_BYTES + 1);
        assert!(validate_models(&[ModelChoice::plain(&long)]).is_err());
        let mut personas = BTreeMap::new();
        personas.insert(
            "off".to_string(),
            Persona {
                prompt: "p".into(),
                label: None,
            },
        );
        assert!(validate_personas(&personas).is_err());
    }
}
