//! /model and /persona: what a conversation runs on, picked from what the operator
//! configured (`[[model.available]]`, `[personas.*]`) and kept in the session.

use super::{Answer, Conversation, Failure};
use crate::core::adapter::Choice;
use crate::core::event::IncomingEvent;
use crate::core::session::Setting;

/// What a listing command answers: the text, and buttons where the platform has them.
pub(in crate::chat) struct Offer {
    pub text: String,
    pub choices: Vec<Choice>,
}

impl Conversation {
    /// `/model`: the models on offer (the current one marked), with a button for each.
    pub(super) async fn model_offer(&self, event: &IncomingEvent) -> Result<Offer, Failure> {
        let session = self.answers.sessions.load(&event.session_key()).await?;
        let current = self.answers.settings.model_for(session.model.as_deref());
        if self.answers.settings.models.is_empty() {
            return Ok(Offer {
                text: format!("This chat is answered by {}.", current.name),
                choices: Vec::new(),
            });
        }
        let mut text = String::from("Models (price: your tokens per model token):\n");
        let mut choices = Vec::new();
        for model in &self.answers.settings.models {
            let mark = if model.name == current.name {
                " ← current"
            } else {
                choices.push(Choice {
                    label: model.label().to_string(),
                    command: format!("/model {}", model.name),
                });
                ""
            };
            let vision = if model.vision { ", reads images" } else { "" };
            text.push_str(&format!(
                "• {} ({}) ×{}{vision}{mark}\n",
                model.label(),
                model.name,
                model.price
            ));
        }
        if !self
            .answers
            .settings
            .models
            .iter()
            .any(|m| m.name == current.name)
        {
            text.push_str(&format!("Now answering: {} (the default).\n", current.name));
        }
        text.push_str("Choose with /model <name>.");
        Ok(Offer { text, choices })
    }

    /// `/model <name>`: picks a listed model for this conversation.
    pub(super) async fn pick_model(&self, event: &IncomingEvent, wanted: &str) -> Answer {
        let wanted = wanted.trim();
        let Some(model) = self.answers.settings.models.iter().find(|m| {
            m.name.eq_ignore_ascii_case(wanted) || m.label().eq_ignore_ascii_case(wanted)
        }) else {
            let names: Vec<&str> = self
                .answers
                .settings
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            return Err(Failure::Refused(if names.is_empty() {
                format!(
                    "This bot offers no choice of model: {} answers.",
                    self.answers.settings.model
                )
            } else {
                format!(
                    "There is no model called `{wanted}` here. Choose one of: {}.",
                    names.join(", ")
                )
            }));
        };
        // The default is stored as no choice, so the conversation follows the
        // operator's default should it change.
        let stored = (model.name != self.answers.settings.model).then_some(model.name.as_str());
        self.answers
            .sessions
            .set(&event.session_key(), Setting::Model, stored)
            .await?;
        let price = if model.price == 1.0 {
            String::from("one of your tokens per model token")
        } else {
            format!("{} of your tokens per model token", model.price)
        };
        Ok(format!(
            "Model set to {} for this conversation ({price}).",
            model.label()
        ))
    }

    /// `/persona`: the personas on offer, the current one marked.
    pub(super) async fn persona_offer(&self, event: &IncomingEvent) -> Result<Offer, Failure> {
        if self.answers.settings.personas.is_empty() {
            return Ok(Offer {
                text: "This bot has no personas configured.".into(),
                choices: Vec::new(),
            });
        }
        let session = self.answers.sessions.load(&event.session_key()).await?;
        let current = self
            .answers
            .settings
            .persona_for(session.persona.as_deref())
            .map(|(name, _)| name);
        let mut text = String::from("Personas:\n");
        let mut choices = Vec::new();
        for (name, persona) in &self.answers.settings.personas {
            let label = persona.label.as_deref().unwrap_or(name);
            let mark = if current == Some(name.as_str()) {
                " ← current"
            } else {
                choices.push(Choice {
                    label: label.to_string(),
                    command: format!("/persona {name}"),
                });
                ""
            };
            text.push_str(&format!("• {label} ({name}){mark}\n"));
        }
        if current.is_some() {
            choices.push(Choice {
                label: "No persona".into(),
                command: "/persona off".into(),
            });
        }
        text.push_str("Choose with /persona <name>; /persona off goes back to the default.");
        Ok(Offer { text, choices })
    }

    /// `/persona <name>` or `/persona off`.
    pub(super) async fn pick_persona(&self, event: &IncomingEvent, wanted: &str) -> Answer {
        let wanted = wanted.trim();
        let key = event.session_key();
        if wanted.eq_ignore_ascii_case("off") {
            self.answers
                .sessions
                .set(&key, Setting::Persona, None)
                .await?;
            return Ok("Persona off: the default system prompt applies again.".into());
        }
        let Some((name, persona)) = self
            .answers
            .settings
            .personas
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        else {
            let names: Vec<&str> = self
                .answers
                .settings
                .personas
                .keys()
                .map(String::as_str)
                .collect();
            return Err(Failure::Refused(if names.is_empty() {
                "This bot has no personas configured.".into()
            } else {
                format!(
                    "There is no persona called `{wanted}`. Choose one of: {}.",
                    names.join(", ")
                )
            }));
        };
        let session = self.answers.sessions.load(&key).await?;
        self.answers
            .sessions
            .set(&key, Setting::Persona, Some(name))
            .await?;
        let mut text = format!(
            "Persona set to {}.",
            persona.label.as_deref().unwrap_or(name)
        );
        if session.system_prompt.is_some() {
            text.push_str(" Your own /system prompt still wins over it; /system reset lets the persona speak.");
        }
        Ok(text)
    }
}
