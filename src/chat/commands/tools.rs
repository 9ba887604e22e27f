//! /tools: what the model may call while it answers, what each call costs, and which
//! models call tools.

use super::super::Conversation;
use crate::core::event::IncomingEvent;

/// Characters of a tool's description shown.
const DESCRIPTION_CHARS: usize = 100;

impl Conversation {
    pub(super) async fn tools_report(&self, _event: &IncomingEvent) -> String {
        let offered = self.offered_tools();
        if offered.is_empty() {
            return "No tools are on offer right now.".into();
        }
        let mut text = String::from("Tools the model may use (tokens per call):\n");
        for tool in &offered {
            let description: String = tool
                .spec
                .description
                .chars()
                .take(DESCRIPTION_CHARS)
                .collect();
            text.push_str(&format!(
                "• {} — {} ({})\n",
                tool.spec.name,
                description.trim(),
                tool.price
            ));
        }
        let settings = &self.answers.settings;
        let mut models: Vec<String> = settings
            .models
            .iter()
            .filter(|m| m.tools || settings.default_tools && m.name == settings.model)
            .map(|m| m.label().to_string())
            .collect();
        if settings.default_tools && !settings.models.iter().any(|m| m.name == settings.model) {
            models.push(settings.model.clone());
        }
        text.push_str(&format!(
            "Models that use them: {}. A call is charged only when it runs; if your balance does not cover one, the answer comes without it.",
            if models.is_empty() { "none".to_string() } else { models.join(", ") }
        ));
        text
    }
}
