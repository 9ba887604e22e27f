//! Documents sent with a message: fetched through the platform, read as text (text
//! files and source code as they are, PDFs in a child process under a memory and time
//! budget, see [`super::pdf`]), cut at `files.max_chars` with a note, and put before the
//! user's text with their names. Anything else gets one sentence and no model call.

use super::notices::Sentence;
use super::pdf::{PdfError, PdfReader};
use crate::core::adapter::{AdapterError, ChatAdapter};
use crate::core::error::chain;
use crate::core::event::Attachment;

/// File name endings read as plain text.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "md", "markdown", "csv", "tsv", "json", "jsonl", "yaml", "yml", "toml", "xml", "html",
    "htm", "css", "log", "ini", "cfg", "conf", "env", "sql", "sh", "bash", "zsh", "ps1", "bat",
    "rs", "py", "js", "mjs", "ts", "tsx", "jsx", "go", "java", "kt", "kts", "scala", "c", "h",
    "cc", "cpp", "hpp", "cs", "rb", "php", "swift", "m", "lua", "pl", "r", "dart", "ex", "exs",
    "erl", "hs", "clj", "vue", "svelte", "tex", "rst", "adoc", "org", "diff", "patch", "srt",
];

/// What a file is, for reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Pdf,
    Unsupported,
}

pub fn kind_of(file: &Attachment) -> Kind {
    let extension = file
        .name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let mime = file.mime.as_deref().unwrap_or("").to_ascii_lowercase();
    if extension == "pdf" || mime == "application/pdf" {
        Kind::Pdf
    } else if TEXT_EXTENSIONS.contains(&extension.as_str())
        || mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/xml" | "application/x-yaml" | "application/toml"
        )
    {
        Kind::Text
    } else {
        Kind::Unsupported
    }
}

/// The text of a text file's bytes, or why it cannot be read.
pub fn read_text(bytes: &[u8]) -> Result<String, &'static str> {
    if bytes.contains(&0) {
        return Err("it looks like a binary file, not text");
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The sentence for a PDF that could not be read.
fn pdf_refusal(name: &str, error: &PdfError, max_pages: u32) -> String {
    match error {
        PdfError::TooManyPages { pages } => format!(
            "{name} has {pages} pages; I read PDFs of up to {max_pages} pages. Please send only the pages you need."
        ),
        PdfError::TooLarge => format!(
            "{name} is too large to read: this PDF needs more memory or time than I may use. Please send a smaller PDF, or paste the text you need."
        ),
        PdfError::NoText => format!(
            "I could not read {name}: the PDF has no text to read (a scan needs OCR first)."
        ),
        PdfError::Unreadable => format!("I could not read {name}: the PDF could not be read."),
        PdfError::Spawn(e) => {
            tracing::error!(error = %chain(e), "could not run the PDF reader");
            format!("I could not read {name} right now. Please try again later.")
        }
    }
}

/// `text` cut after `max_chars` characters, with a note saying how much was left out.
pub fn cut(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((at, _)) => {
            let total = text.chars().count();
            format!(
                "{}\n[… cut here: the file has {total} characters, only the first {max_chars} are included]",
                &text[..at]
            )
        }
    }
}

/// The files of a message as prompt text before `question`, or the sentence that says
/// why they cannot be read (nothing is charged then).
pub async fn with_files(
    adapter: &dyn ChatAdapter,
    files: &[Attachment],
    question: &str,
    max_chars: usize,
    max_bytes: u64,
    pdfs: &PdfReader,
) -> Result<String, Sentence> {
    let mut prompt = String::new();
    for file in files {
        let kind = kind_of(file);
        if kind == Kind::Unsupported {
            return Err(Sentence::from(format!(
                "I can read text files (txt, md, csv, json, source code) and PDFs; {} is neither.",
                file.name
            )));
        }
        if file.size.is_some_and(|size| size > max_bytes) {
            return Err(Sentence::from(too_large(file, max_bytes)));
        }
        let bytes = match adapter.download(file, max_bytes).await {
            Ok(bytes) => bytes,
            Err(AdapterError::TooLarge { .. }) => {
                return Err(Sentence::from(too_large(file, max_bytes)));
            }
            Err(e) => {
                tracing::warn!(file = %file.name, error = %chain(&e), "could not fetch a file");
                return Err(Sentence::from(format!(
                    "I could not fetch {} from the platform. Please try sending it again.",
                    file.name
                )));
            }
        };
        let text = match kind {
            Kind::Pdf => pdfs
                .read(bytes, max_chars)
                .await
                .map_err(|e| pdf_refusal(&file.name, &e, pdfs.max_pages()))?,
            _ => cut(
                &read_text(&bytes)
                    .map_err(|why| format!("I could not read {}: {why}.", file.name))?,
                max_chars,
            ),
        };
        prompt.push_str(&format!("File: {}\n```\n{}\n```\n\n", file.name, text));
    }
    prompt.push_str(question);
    Ok(prompt.trim_end().to_string())
}

fn too_large(file: &Attachment, max_bytes: u64) -> String {
    format!(
        "{} is too large: files up to {} KB are read.",
        file.name,
        max_bytes / 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mime: Option<&str>) -> Attachment {
        Attachment {
            id: "f".into(),
            name: name.into(),
            mime: mime.map(str::to_string),
            size: None,
            image: None,
            audio_seconds: None,
        }
    }

    #[test]
    fn kinds_come_from_the_name_or_the_type() {
        assert_eq!(kind_of(&file("notes.MD", None)), Kind::Text);
        assert_eq!(kind_of(&file("main.rs", None)), Kind::Text);
        assert_eq!(kind_of(&file("data", Some("text/csv"))), Kind::Text);
        assert_eq!(kind_of(&file("x.pdf", None)), Kind::Pdf);
        assert_eq!(kind_of(&file("scan", Some("application/pdf"))), Kind::Pdf);
        assert_eq!(
            kind_of(&file("song.mp3", Some("audio/mpeg"))),
            Kind::Unsupported
        );
        assert_eq!(kind_of(&file("sheet.xlsx", None)), Kind::Unsupported);
    }

    #[test]
    fn text_is_cut_with_a_note_and_binaries_and_bad_pdfs_are_refused() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut("ééééé", 3);
        assert!(cut_text.starts_with("ééé\n[… cut here: the file has 5 characters"));
        assert!(read_text(b"a\0b").is_err());
        assert_eq!(read_text("héllo".as_bytes()).unwrap(), "héllo");
    }
}
