//! multipart/form-data as the fakes read it (teloxide's file-capable methods, the
//! transcription upload): each field's text; a file field as its file name, with
//! `<name>_bytes` holding its length.

use serde_json::{Map, Value, json};

/// The fields of a multipart body, or `None` when `content_type` is not multipart.
pub fn fields(content_type: &str, body: &[u8]) -> Option<Map<String, Value>> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .map(|b| format!("--{}", b.trim_matches('"')))?;
    if !content_type.starts_with("multipart/form-data") {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    let mut fields = Map::new();
    for part in text.split(boundary.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let quoted = |key: &str| {
            head.split(key)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let Some(name) = quoted("; name=\"").or_else(|| quoted("name=\"")) else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        match quoted("filename=\"") {
            Some(file) => {
                fields.insert(name.clone(), json!(file));
                fields.insert(format!("{name}_bytes"), json!(value.len()));
            }
            None => {
                fields.insert(name, json!(value));
            }
        }
    }
    Some(fields)
}
