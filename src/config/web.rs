//! `[web]`: the web front's settings.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::parse::{self, de_duration, ser_duration};

/// The web front: a login, a cookie session in the session store, a streaming chat page.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// Where the web front listens; `None` (an empty string in the file) turns it off.
    #[serde(
        deserialize_with = "parse::de_listen",
        serialize_with = "parse::ser_listen"
    )]
    pub listen: Option<SocketAddr>,
    /// Visitors may create their own account at `/signup`.
    pub signup: bool,
    /// The session cookie is marked `Secure` (served over HTTPS, e.g. behind a proxy).
    pub secure_cookies: bool,
    /// How long a login lasts without use; every request pushes it forward.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub session_ttl: Duration,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` is believed, so
    /// that behind one the per-address login limit counts visitors, not the proxy.
    #[serde(
        default,
        deserialize_with = "parse::de_networks",
        serialize_with = "parse::ser_networks"
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// Login and sign-up attempts the whole web front takes per second (each costs an
    /// argon2 hash: 19 MiB and tens of ms); past it, visitors are asked to retry.
    pub login_attempts_per_second: u32,
}
