//! Where a tool may fetch from: public addresses only. A name is resolved by the client's
//! own resolver, which drops private, loopback, link-local (the cloud metadata address
//! among them), shared, documentation and reserved addresses, so a redirect or a DNS
//! answer cannot steer a fetch inside the bot's network; an address written in the URL
//! is checked the same way. Hosts the operator lists are exempt (an intranet wiki).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address on the public internet.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: an IPv4 address inside
                || s[0] == 0x2002) // 6to4: an IPv4 address inside
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_unspecified()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// Resolves names to their public addresses only (hosts in `allowed` to any).
pub(super) struct PublicOnly {
    pub(super) allowed: Arc<Vec<String>>,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self
            .allowed
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allowed || is_public(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Why an address may not be fetched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum Refused {
    #[error("only http and https addresses can be fetched, not {0}")]
    Scheme(String),
    #[error("the address has no host")]
    NoHost,
    #[error("{0} is a private or local address")]
    Private(String),
}

/// An address written in a URL (which no resolver sees) must be public too.
pub(super) fn check_url(url: &reqwest::Url, allowed: &[String]) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::Scheme(url.scheme().to_string()));
    }
    let Some(host) = url.host_str() else {
        return Err(Refused::NoHost);
    };
    if allowed.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(Refused::Private(host.to_string())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} passed");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} refused");
        }
    }

    #[test]
    fn addresses_in_urls_are_checked_and_other_schemes_refused() {
        let check = |u: &str| check_url(&reqwest::Url::parse(u).unwrap(), &[]);
        assert!(check("http://169.254.169.254/latest/meta-data").is_err());
        assert!(check("http://[::1]:8080/").is_err());
        assert!(
            check("http://127.1/").is_err(),
            "the shorthand of 127.0.0.1"
        );
        assert_eq!(
            check("file:///etc/passwd"),
            Err(Refused::Scheme("file".into()))
        );
        assert!(check("https://example.com/").is_ok());
        let allowed = ["127.0.0.1".to_string()];
        assert!(
            check_url(
                &reqwest::Url::parse("http://127.0.0.1:9/").unwrap(),
                &allowed
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_local_address_is_not_resolved() {
        let guard = PublicOnly {
            allowed: Arc::new(Vec::new()),
        };
        let refused = guard.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err(), "localhost resolved for a fetch");
        let allowed = PublicOnly {
            allowed: Arc::new(vec!["localhost".into()]),
        };
        let addrs: Vec<_> = allowed
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
