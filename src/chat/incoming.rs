//! What the user sent, made ready for the prompt before anything is reserved: the
//! files read into the text, the replied-to message quoted before it, and the images
//! checked against the model and fetched. Every refusal here is one sentence and costs
//! nothing.

use super::answers::Answers;
use super::notices::{Sentence, say};
use super::{files, images};
use crate::config::ModelChoice;
use crate::core::adapter::{AdapterError, ChatAdapter, ReplyTarget};
use crate::core::error::chain;
use crate::core::event::{Attachment, IncomingEvent};
use crate::core::model::Image;
use crate::llm::audio::Transcriber;
use crate::quota::QuotaError;

/// The user's message as the prompt takes it.
pub(super) struct Asking {
    /// Files, quote and question.
    pub text: String,
    /// What goes into the history for this message: the text, marked when images came
    /// with it (the images themselves are not kept).
    pub recorded: String,
    pub images: Vec<Attachment>,
}

/// The sentence for a transcription the ledger refused.
fn transcription_refusal(e: QuotaError) -> String {
    match e {
        QuotaError::Exhausted { remaining, needed } => format!(
            "Quota exhausted: transcribing this recording costs {needed} tokens and {remaining} are left."
        ),
        QuotaError::Limit(sentence) => sentence.to_string(),
        e => {
            tracing::error!(error = %chain(&e), "could not check the balance for a transcription");
            "Sorry, I can't check your token balance right now. Please try again in a moment."
                .to_string()
        }
    }
}

/// Longest transcript shown back to the user.
const SHOWN_TRANSCRIPT_CHARS: usize = 300;

impl Answers {
    pub(super) async fn asking(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        target: &ReplyTarget,
        question: &str,
    ) -> Result<Asking, Sentence> {
        let (images, others): (Vec<Attachment>, Vec<Attachment>) = event
            .attachments
            .iter()
            .cloned()
            .partition(|a| a.image.is_some());
        let (recordings, documents): (Vec<Attachment>, Vec<Attachment>) =
            others.into_iter().partition(|a| a.audio_seconds.is_some());
        let mut question = question.to_string();
        for recording in &recordings {
            let transcript = self.transcribe(event, adapter, recording).await?;
            let shown = crate::core::text::ellipsis(&transcript, SHOWN_TRANSCRIPT_CHARS);
            say(adapter, target, &format!("🎤 “{shown}”")).await;
            question = if question.trim().is_empty() {
                transcript
            } else {
                format!("{question}\n\n(Transcript of the recording:) {transcript}")
            };
        }
        let question = question.as_str();
        let mut text = if documents.is_empty() {
            question.to_string()
        } else {
            files::with_files(
                adapter,
                &documents,
                question,
                self.settings.file_max_chars,
                self.settings.file_max_bytes,
                &self.settings.pdfs,
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
        // The mark `had_pictures` reads.
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

    /// A recording's transcript, charged as its own ledger entry once it is made. The
    /// user must afford what the client says it lasts before it is fetched; its length
    /// is then measured from the audio, that cost held, and settled as soon as the
    /// server has transcribed it — whatever becomes of the answer after. Refused (for
    /// nothing) when voice is off, the user cannot pay, or the server fails.
    async fn transcribe(
        &self,
        event: &IncomingEvent,
        adapter: &dyn ChatAdapter,
        recording: &Attachment,
    ) -> Result<String, Sentence> {
        let Some(transcriber) = &self.settings.transcriber else {
            return Err(Sentence::from(
                "Voice messages are not enabled on this bot. Please type your question.",
            ));
        };
        let user = event.quota_user();
        let declared = recording.audio_seconds.unwrap_or(0);
        self.quota
            .can_afford(&user, transcriber.cost(declared))
            .await
            .map_err(transcription_refusal)?;
        let too_large = || {
            format!(
                "That recording is too large: files up to {} KB are read.",
                self.settings.file_max_bytes / 1024
            )
        };
        if recording
            .size
            .is_some_and(|size| size > self.settings.file_max_bytes)
        {
            return Err(Sentence::from(too_large()));
        }
        let audio = adapter
            .download(recording, self.settings.file_max_bytes)
            .await
            .map_err(|e| match e {
                AdapterError::TooLarge { .. } => too_large(),
                e => {
                    tracing::warn!(error = %chain(&e), "could not fetch a recording");
                    "I could not fetch that recording from the platform. Please try sending it again."
                        .to_string()
                }
            })?;
        let cost = transcriber.cost(Transcriber::seconds(&audio, declared));
        let hold = self
            .quota
            .reserve_for(&user, cost, Some(&transcriber.model))
            .await
            .map_err(transcription_refusal)?;
        let transcript = match transcriber.transcribe(audio, &recording.name).await {
            Ok(transcript) => transcript,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "transcription failed");
                if let Err(e) = self.quota.refund(hold).await {
                    tracing::error!(error = %chain(&e), "could not refund a failed transcription");
                }
                return Err(Sentence::from(format!(
                    "I could not transcribe that recording. {}",
                    e.user_message()
                )));
            }
        };
        // Performed: charged now, once, whatever happens to the answer.
        if let Err(e) = self.quota.settle(hold, cost).await {
            tracing::error!(error = %chain(&e), cost, "could not charge a transcription");
        }
        if transcript.is_empty() {
            return Err(Sentence::from(
                "I could not make out any words in that recording.",
            ));
        }
        Ok(transcript)
    }

    /// The images fetched for `model`, with their tokens; refused when the model does
    /// not take images.
    pub(super) async fn pictures(
        &self,
        adapter: &dyn ChatAdapter,
        model: &ModelChoice,
        attached: &[Attachment],
    ) -> Result<(Vec<Image>, u32), Sentence> {
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
            return Err(Sentence::from(if seeing.is_empty() {
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
            }));
        }
        let refs: Vec<&Attachment> = attached.iter().collect();
        images::fetch(
            adapter,
            &refs,
            self.settings.image_detail,
            self.settings.file_max_bytes,
        )
        .await
    }
}

/// Whether a recorded question was asked with pictures (marked "[an image] …" or
/// "[3 images] …" by [`Answers::asking`]; the pictures themselves are not kept).
pub(super) fn had_pictures(recorded: &str) -> bool {
    if recorded.starts_with("[an image] ") {
        return true;
    }
    recorded
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(" images] "))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::had_pictures;

    #[test]
    fn a_question_with_pictures_is_recognised_by_its_mark() {
        assert!(had_pictures("[an image] what is this?"));
        assert!(had_pictures("[12 images] which is brighter?"));
        assert!(!had_pictures("[some images] no"));
        assert!(!had_pictures("[ images] no"));
        assert!(!had_pictures("what about [2 images] here"));
        assert!(!had_pictures("plain"));
    }
}
