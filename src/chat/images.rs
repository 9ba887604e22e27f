//! Images sent to the bot: checked (count, size, a model that sees), fetched through
//! the platform, sent as `data:` URLs, and counted before the call with OpenAI's tile
//! rule so they are reserved like text.

use base64::Engine;

use super::notices::Sentence;
use crate::config::ImageDetail;
use crate::core::adapter::{AdapterError, ChatAdapter};
use crate::core::error::chain;
use crate::core::event::Attachment;
use crate::core::model::Image;

/// Images of one message.
pub const MAX_IMAGES: usize = 4;

/// Tokens of an image by OpenAI's rule: 85 for `low`; otherwise scaled into 2048×2048,
/// then its shorter side to 768, and 170 per 512-pixel tile on top of the 85.
pub fn tokens(detail: ImageDetail, width: u32, height: u32) -> u32 {
    if detail == ImageDetail::Low {
        return 85;
    }
    if width == 0 || height == 0 {
        // Size unknown (an image sent as a file): counted as a large one.
        return 85 + 170 * 4;
    }
    let (mut w, mut h) = (f64::from(width), f64::from(height));
    let fit = (2048.0 / w.max(h)).min(1.0);
    w *= fit;
    h *= fit;
    let shorter = (768.0 / w.min(h)).min(1.0);
    w *= shorter;
    h *= shorter;
    let tiles = (w / 512.0).ceil() as u32 * (h / 512.0).ceil() as u32;
    85 + 170 * tiles
}

/// The MIME type of image bytes, by their signature.
fn mime_of(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', ..] => "image/gif",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => "image/jpeg",
    }
}

/// The images fetched and encoded, with their token estimate; or the sentence that says
/// why not (nothing is charged then).
pub async fn fetch(
    adapter: &dyn ChatAdapter,
    images: &[&Attachment],
    detail: ImageDetail,
    max_bytes: u64,
) -> Result<(Vec<Image>, u32), Sentence> {
    if images.len() > MAX_IMAGES {
        return Err(Sentence::from(format!(
            "Please send at most {MAX_IMAGES} images with one message."
        )));
    }
    let mut fetched = Vec::with_capacity(images.len());
    let mut total = 0;
    for image in images {
        if image.size.is_some_and(|size| size > max_bytes) {
            return Err(Sentence::from(format!(
                "That image is too large: images up to {} KB are read.",
                max_bytes / 1024
            )));
        }
        let bytes = adapter
            .download(image, max_bytes)
            .await
            .map_err(|e| match e {
                AdapterError::TooLarge { .. } => format!(
                    "That image is too large: images up to {} KB are read.",
                    max_bytes / 1024
                ),
                e => {
                    tracing::warn!(error = %chain(&e), "could not fetch an image");
                    "I could not fetch that image from the platform. Please try sending it again."
                        .to_string()
                }
            })?;
        let (width, height) = image.image.unwrap_or((0, 0));
        total += tokens(detail, width, height);
        fetched.push(Image {
            data_url: format!(
                "data:{};base64,{}",
                mime_of(&bytes),
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            ),
            detail: detail.as_str(),
        });
    }
    Ok((fetched, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_openais_tile_rule() {
        assert_eq!(tokens(ImageDetail::Low, 4096, 4096), 85);
        // 1024×1024: shorter side to 768 → 768×768 → 4 tiles.
        assert_eq!(tokens(ImageDetail::High, 1024, 1024), 85 + 170 * 4);
        // 2048×4096: into 2048 → 1024×2048, shorter side to 768 → 768×1536 → 2×3 tiles.
        assert_eq!(tokens(ImageDetail::High, 2048, 4096), 85 + 170 * 6);
        // Small images are not scaled up: 300×200 is one tile.
        assert_eq!(tokens(ImageDetail::Auto, 300, 200), 85 + 170);
        assert_eq!(mime_of(b"\x89PNG...."), "image/png");
        assert_eq!(mime_of(b"\xff\xd8\xff"), "image/jpeg");
    }
}
