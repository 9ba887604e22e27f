//! What the user sent, made ready for the prompt before anything is reserved: the
//! files read into the text, the replied-to message quoted before it, and the images
//! checked against the model and fetched. Every refusal here is one sentence and costs
//! nothing.

use super::{Conversation, files, images};
use crate::config::ModelChoice;
use crate::core::adapter::ChatAdapter;
use crate::core::event::{Attachment, IncomingEvent};
use crate::core::model::Image;

/// The user's message as the prompt takes it.
pub(super) struct Asking {
    /// Files, quote and question.
    pub text: String,
    /// What goes into the history for this message: the text, marked when images came
    /// with it (the images themselves are not kept).
    pub recorded: String,
    pub images: Vec<Attachment>,
}

impl Conversation {
    pub(super) async fn asking(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        question: &str,
    ) -> Result<Asking, String> {
        let (images, documents): (Vec<Attachment>, Vec<Attachment>) = event
            .attachments
            .iter()
            .cloned()
            .partition(|a| a.image.is_some());
        let mut text = if documents.is_empty() {
            question.to_string()
        } else {
            files::with_files(
                adapter,
                &documents,
                question,
                self.settings.file_max_chars,
                self.settings.file_max_bytes,
            )
            .await?
        };
        if text.trim().is_empty() && !images.is_empty() {
            text = "What is in this image?".to_string();
        }
        // A reply to a message asks about it: the model (and the history) get the
        // quoted text before the question.
        if let Some(quoted) = &event.quoted {
            text = quoted.with_question(&text);
        }
        let recorded = match images.len() {
            0 => text.clone(),
            1 => format!("[an image] {text}"),
            n => format!("[{n} images] {text}"),
        };
        Ok(Asking {
            text,
            recorded,
            images,
        })
    }

    /// The images fetched for `model`, with their tokens; refused when the model does
    /// not take images.
    pub(super) async fn pictures(
        &self,
        adapter: &dyn ChatAdapter,
        model: &ModelChoice,
        attached: &[Attachment],
    ) -> Result<(Vec<Image>, u32), String> {
        if attached.is_empty() {
            return Ok((Vec::new(), 0));
        }
        if !model.vision {
            let seeing: Vec<&str> = self
                .settings
                .models
                .iter()
                .filter(|m| m.vision)
                .map(|m| m.name.as_str())
                .collect();
            return Err(if seeing.is_empty() {
                format!(
                    "Sorry, {} cannot see images. Please describe it in words.",
                    model.label()
                )
            } else {
                format!(
                    "Sorry, {} cannot see images. Pick one that can with /model ({}), then send it again.",
                    model.label(),
                    seeing.join(", ")
                )
            });
        }
        let refs: Vec<&Attachment> = attached.iter().collect();
        images::fetch(
            adapter,
            &refs,
            &self.settings.image_detail,
            self.settings.file_max_bytes,
        )
        .await
    }
}
