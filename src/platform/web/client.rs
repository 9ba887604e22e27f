//! Who is asking: the visitor's address, which the per-address login limit counts. Behind
//! a reverse proxy every connection comes from the proxy; the proxies named in
//! `web.trusted_proxies` are believed about the address they forwarded.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The visitor's address: the connection's, unless that is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy. Entries further left
/// were written by whoever sent the request and can be forged, so they are not read; an
/// entry that is not an address stops the walk at the last trusted hop.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Several headers count as one list, in order; the nearest hop is the last entry.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_connection_is_the_visitor_whatever_it_claims() {
        let h = headers(&["203.0.113.7"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &[]),
            ip("198.51.100.1")
        );
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_visitor() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        // The visitor forged the first entry; the ingress (10.1.2.3) and the local proxy
        // added the rest.
        let h = headers(&["1.1.1.1, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.7")
        );
        // The same list split over two headers.
        let h = headers(&["1.1.1.1, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.7")
        );
        // IPv6, and an IPv4 connection seen through a dual-stack socket.
        let h = headers(&["2001:db8::5"]);
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn garbage_or_nothing_but_proxies_stays_with_the_last_trusted_hop() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        let h = headers(&["203.0.113.7, not-an-address, 10.1.2.3"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("10.1.2.3")
        );
        let h = headers(&["10.9.9.9, 10.1.2.3"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("10.9.9.9")
        );
    }
}
