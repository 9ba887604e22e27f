//! Value parsers used while deserializing settings (durations, URLs, addresses, shard
//! ranges), their serializers for `config check`, and the redaction of secrets.
//! Errors are plain messages; the `config` crate adds the key they belong to.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serializer};

use super::types::ShardRange;

/// The longest duration any setting takes: ten years.
const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86400.0;

/// A setting's value that cannot be used, and why (the key is added by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

/// Parses "90", "1500ms", "30s", "10m", "24h", "7d" into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, BadValue> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        BadValue(format!(
            "`{text}` is not a duration (try \"30s\", \"10m\", \"24h\")"
        ))
    })?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(BadValue(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)"
            )));
        }
    };
    seconds_to_duration(seconds, text)
}

/// A number of seconds as a duration, refusing what no setting could mean (negative,
/// not finite, more than ten years) instead of panicking on it.
fn seconds_to_duration(seconds: f64, shown: &str) -> Result<Duration, BadValue> {
    if !seconds.is_finite() || !(0.0..=MAX_DURATION_SECS).contains(&seconds) {
        return Err(BadValue(format!(
            "`{shown}` is out of range (a duration from 0 to 10 years)"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(s) => seconds_to_duration(s as f64, &s.to_string()),
        Raw::Float(s) => seconds_to_duration(s, &s.to_string()),
        Raw::Text(t) => parse_duration(&t),
    }
    .map_err(serde::de::Error::custom)
}

pub(super) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    } else {
        s.serialize_str(&format!("{}s", d.as_secs()))
    }
}

/// An http(s) URL.
pub fn parse_http_url(text: &str) -> Result<Url, BadValue> {
    match Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        Ok(url) => Err(BadValue(format!(
            "must be an http(s) URL, got scheme `{}`",
            url.scheme()
        ))),
        Err(e) => Err(BadValue(format!(
            "`{}` is not a URL: {e}",
            redact_url_str(text)
        ))),
    }
}

pub(super) fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    parse_http_url(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub(super) fn de_url_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse_http_url(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// URLs are shown with any credentials in them hidden.
pub(super) fn ser_url<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_str(url.as_str()))
}

pub(super) fn ser_url_opt<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => ser_url(url, s),
        None => s.serialize_str(""),
    }
}

pub(super) fn de_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!("`{text}` is not an address like 0.0.0.0:8080"))
    })
}

pub(super) fn ser_display<T: std::fmt::Display, S: Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

pub(super) fn de_shards<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ShardRange>, D::Error> {
    ShardRange::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub(super) fn ser_shards<S: Serializer>(v: &Option<ShardRange>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_str(""),
    }
}

pub(super) fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_str("[not set]"),
    }
}

pub(super) fn redact_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url_str(v.expose_secret()))
}

pub(super) fn redact_url_opt<S: Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => redact_url(url, s),
        None => s.serialize_str("[not set]"),
    }
}

/// Query parameters whose values are secrets (`postgres://host/db?password=…`).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "key",
    "api_key",
    "apikey",
    "access_token",
];

/// Hides the secrets of a URL: the user-info part (`redis://:pw@host` →
/// `redis://[redacted]@host`) and secret query values (`?password=pw` →
/// `?password=[redacted]`).
pub fn redact_url_str(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = base.to_string();
    if let Some(scheme_end) = base.find("://") {
        let rest = &base[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out = format!("{}://[redacted]@{}", &base[..scheme_end], &rest[at + 1..]);
        }
    }
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}=[redacted]")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// An address to listen on, or nothing for an empty string.
pub(super) fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address to listen on (e.g. 127.0.0.1:9090 or 0.0.0.0:9090; empty to turn it off)"
        ))
    })
}

pub(super) fn ser_listen<S: serde::Serializer>(
    addr: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&addr.map(|a| a.to_string()).unwrap_or_default())
}

/// A list of addresses or networks (`10.0.0.0/8`; a bare address is that one host).
pub(super) fn de_networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{t}` is not an address or a network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

pub(super) fn ser_networks<S: serde::Serializer>(
    nets: &[ipnet::IpNet],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(|n| n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_hidden() {
        assert_eq!(
            redact_url_str("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://[redacted]@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url_str("postgres://bot@db:5432/gptbot?sslmode=require&password=hunter2"),
            "postgres://[redacted]@db:5432/gptbot?sslmode=require&password=[redacted]"
        );
        assert_eq!(
            redact_url_str("postgres://u:p@db/x?PASSWORD=hunter2"),
            "postgres://[redacted]@db/x?PASSWORD=[redacted]"
        );
        assert_eq!(
            redact_url_str("https://api.example/v1?api_key=sk-1"),
            "https://api.example/v1?api_key=[redacted]"
        );
        assert_eq!(redact_url_str("sqlite://gptbot.db"), "sqlite://gptbot.db");
    }

    #[test]
    fn durations_parse_within_bounds() {
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("1e20").is_err());
        assert!(seconds_to_duration(1e20, "1e20").is_err());
        assert!(seconds_to_duration(f64::NAN, "NaN").is_err());
    }
}
