//! Secrets the bot makes up: 32 bytes from the OS's CSPRNG, URL-safe base64 (43
//! characters) — web session ids, CSRF tokens, device cookies, in-flight slot tokens.

use base64::Engine;

pub fn random() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
