//! How long a recording lasts, read from the file rather than from what the client says:
//! Ogg (Opus or Vorbis — Telegram's and Discord's voice notes) from its last page's
//! granule position, WAV from its header. Pure functions over bytes already bounded by
//! `files.max_bytes`; anything unrecognised is `None` (then charged by size).

/// Bytes per second of the lowest speech bitrate charged by size (32 kbit/s): a file
/// whose header claims less than its size at this rate is charged by its size.
pub const BYTES_PER_SECOND_FLOOR: f64 = 4000.0;

/// One Ogg page: its granule position, where its body is, where the next page starts.
struct Page {
    granule: u64,
    serial: u32,
    body: std::ops::Range<usize>,
    next: usize,
}

fn page_at(bytes: &[u8], at: usize) -> Option<Page> {
    let header = bytes.get(at..at + 27)?;
    if &header[..4] != b"OggS" {
        return None;
    }
    let granule = u64::from_le_bytes(header[6..14].try_into().ok()?);
    let serial = u32::from_le_bytes(header[14..18].try_into().ok()?);
    let segments = usize::from(header[26]);
    let table = bytes.get(at + 27..at + 27 + segments)?;
    let start = at + 27 + segments;
    let len: usize = table.iter().map(|&b| usize::from(b)).sum();
    let end = start.checked_add(len)?;
    (end <= bytes.len()).then_some(Page {
        granule,
        serial,
        body: start..end,
        next: end,
    })
}

/// Seconds of the first logical stream of an Ogg Opus or Ogg Vorbis file.
pub fn ogg_seconds(bytes: &[u8]) -> Option<f64> {
    let first = page_at(bytes, 0)?;
    let head = &bytes[first.body.clone()];
    let (rate, pre_skip) = if head.starts_with(b"OpusHead") && head.len() >= 12 {
        (
            48_000.0,
            f64::from(u16::from_le_bytes([head[10], head[11]])),
        )
    } else if head.len() >= 16 && head[0] == 1 && &head[1..7] == b"vorbis" {
        let rate = u32::from_le_bytes(head[12..16].try_into().ok()?);
        (f64::from(rate), 0.0)
    } else {
        return None;
    };
    if rate <= 0.0 {
        return None;
    }
    let mut last = 0u64;
    let mut at = 0;
    while let Some(page) = page_at(bytes, at) {
        // -1 marks a page on which no packet ends.
        if page.serial == first.serial && page.granule != u64::MAX {
            last = last.max(page.granule);
        }
        at = page.next;
    }
    Some(((last as f64 - pre_skip) / rate).max(0.0))
}

/// Seconds of a PCM WAV file: its data chunk's size over the byte rate.
pub fn wav_seconds(bytes: &[u8]) -> Option<f64> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut byte_rate = None;
    while let Some(header) = bytes.get(at..at + 8) {
        let size = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
        match &header[..4] {
            b"fmt " => {
                let rate = bytes.get(at + 16..at + 20)?;
                byte_rate = Some(u32::from_le_bytes(rate.try_into().ok()?));
            }
            // A streamed WAV may say 0 or 0xFFFFFFFF: what is there counts.
            b"data" => {
                let rate = f64::from(byte_rate.filter(|&r| r > 0)?);
                let there = bytes.len().saturating_sub(at + 8);
                let size = if size == 0 || size > there {
                    there
                } else {
                    size
                };
                return Some(size as f64 / rate);
            }
            _ => {}
        }
        at = at.checked_add(8 + size + size % 2)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ogg page of `body` with granule position `granule`.
    fn page(granule: u64, body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&7u32.to_le_bytes()); // serial
        page.extend_from_slice(&[0; 8]); // sequence, CRC
        let mut lacing = vec![255u8; body.len() / 255];
        lacing.push((body.len() % 255) as u8);
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        page.extend_from_slice(body);
        page
    }

    pub fn ogg_opus(seconds: u64) -> Vec<u8> {
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes()); // pre-skip
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        let mut file = page(0, &head);
        file.extend(page(0, b"OpusTags"));
        file.extend(page(u64::MAX, &[1; 300]));
        file.extend(page(312 + 48_000 * seconds, &[2; 40]));
        file
    }

    #[test]
    fn an_ogg_opus_note_lasts_until_its_last_granule() {
        assert_eq!(ogg_seconds(&ogg_opus(12)), Some(12.0));
        assert_eq!(ogg_seconds(b"OggS-voice"), None);
        assert_eq!(ogg_seconds(b"not ogg at all"), None);
        // Cut short: the pages that are whole still count.
        let whole = ogg_opus(30);
        assert!(ogg_seconds(&whole[..whole.len() - 5]).is_some());
    }

    #[test]
    fn a_wav_lasts_its_data_over_its_byte_rate() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
        wav.extend_from_slice(&16_000u32.to_le_bytes());
        wav.extend_from_slice(&32_000u32.to_le_bytes()); // byte rate
        wav.extend_from_slice(&[2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&64_000u32.to_le_bytes());
        wav.extend(std::iter::repeat_n(0u8, 64_000));
        assert_eq!(wav_seconds(&wav), Some(2.0));
        assert_eq!(wav_seconds(b"RIFF"), None);
    }

    #[test]
    fn the_charge_is_never_below_the_claim_nor_the_size() {
        use crate::llm::audio::Transcriber;
        assert_eq!(
            Transcriber::seconds(&ogg_opus(12), 1),
            12,
            "the file, not the claim"
        );
        assert_eq!(
            Transcriber::seconds(&ogg_opus(2), 5),
            5,
            "never below the claim"
        );
        // A header that claims 1 s on 80 kB: charged by size (20 s at 32 kbit/s).
        let mut forged = ogg_opus(1);
        forged.extend(std::iter::repeat_n(0u8, 80_000));
        assert_eq!(Transcriber::seconds(&forged, 0), 21);
        assert_eq!(Transcriber::seconds(b"", 0), 0);
    }
}
