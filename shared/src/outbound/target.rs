//! Where a delivery may go. An endpoint URL must be `https` to a host name
//! (never an IP literal or `localhost`), without userinfo or a fragment, at
//! most 2,048 characters. Every address the host resolves to is checked at
//! connect time ([`address_allowed`], used by [`super::resolver`]): nothing
//! but public unicast, so no loopback, private, link-local, carrier-grade NAT,
//! multicast, metadata or IPv6-embedded IPv4 trick is ever connected to.
//!
//! `DELIVERY_ALLOW_LOOPBACK=true` (local stack and tests only) accepts
//! `http://127.0.0.1:<port>/...` and `http://localhost:<port>/...` and
//! allows loopback addresses; every other rule stays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid_url")]
pub struct InvalidUrl;

/// The endpoint URL, if acceptable.
pub fn validate_url(raw: &str, allow_loopback: bool) -> Result<Url, InvalidUrl> {
    if raw.len() > MAX_URL_LEN || raw.chars().any(char::is_whitespace) {
        return Err(InvalidUrl);
    }
    let url = Url::parse(raw).map_err(|_| InvalidUrl)?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(InvalidUrl);
    }
    if allow_loopback && is_local_http(&url) {
        return Ok(url);
    }
    match url.host() {
        Some(Host::Domain(domain)) if url.scheme() == "https" && !is_localhost(domain) => Ok(url),
        _ => Err(InvalidUrl),
    }
}

/// `http://127.0.0.1:<port>` or `http://localhost:<port>`.
fn is_local_http(url: &Url) -> bool {
    let local_host = match url.host() {
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Domain(d)) => d == "localhost",
        _ => false,
    };
    url.scheme() == "http" && local_host && url.port().is_some()
}

fn is_localhost(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// Whether a delivery may connect to `ip`.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => v6_allowed(v6, allow_loopback),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

/// IPv4 blocks that are never a product's public server.
const V4_REFUSED: [([u8; 4], u32); 15] = [
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, instance metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, broadcast
];

fn v4_allowed(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if allow_loopback && ip.is_loopback() {
        return true;
    }
    !V4_REFUSED.iter().any(|(net, bits)| in_v4(ip, *net, *bits))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// IPv6 blocks inside global unicast (2000::/3) that are refused anyway.
const V6_REFUSED: [([u16; 8], u32); 4] = [
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),      // Teredo (embeds IPv4)
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48), // benchmarking
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),      // 6to4 (embeds IPv4)
];

/// Only global unicast (2000::/3), minus the blocks above. That leaves out
/// `::`, `::1` (unless loopback is allowed), IPv4-mapped `::ffff:0:0/96`
/// and IPv4-compatible `::/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
/// discard `100::/64`, ULA `fc00::/7` (with the metadata `fd00:ec2::254`),
/// link-local `fe80::/10`, site-local and multicast `ff00::/8`.
fn v6_allowed(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if allow_loopback && ip == Ipv6Addr::LOCALHOST {
        return true;
    }
    in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !V6_REFUSED.iter().any(|(net, bits)| in_v6(ip, *net, *bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> bool {
        validate_url(url, false).is_ok()
    }

    #[test]
    fn endpoint_urls_are_https_to_a_host_name() {
        assert!(ok("https://backend.example.com/ig-events?x=1"));
        assert!(ok("https://backend.example.com:8443/"));
        for bad in [
            "http://backend.example.com/",
            "https://user:pw@backend.example.com/",
            "https://user@backend.example.com/",
            "https://backend.example.com/#frag",
            "https://backend.example.com/#",
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "ftp://backend.example.com/",
            "https://backend.example.com/ x",
            "not a url",
            "",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        let long = format!("https://b.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(!ok(&long));
        let edge = format!("https://b.example.com/{}", "a".repeat(MAX_URL_LEN - 22));
        assert_eq!(edge.len(), MAX_URL_LEN);
        assert!(ok(&edge));
    }

    #[test]
    fn loopback_urls_need_the_allowance_and_a_port() {
        for local in ["http://127.0.0.1:8080/hook", "http://localhost:9000/"] {
            assert!(!ok(local), "{local}");
            assert!(validate_url(local, true).is_ok(), "{local}");
        }
        for still_bad in [
            "http://127.0.0.1/",
            "http://127.0.0.2:80/",
            "http://10.0.0.1:80/",
            "http://[::1]:80/",
            "http://user@127.0.0.1:80/",
            "http://example.com:80/",
        ] {
            assert!(validate_url(still_bad, true).is_err(), "{still_bad}");
        }
    }

    fn allowed(ip: &str) -> bool {
        address_allowed(ip.parse().unwrap(), false)
    }

    #[test]
    fn public_unicast_is_allowed() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(allowed(ip), "{ip}");
        }
    }

    #[test]
    fn every_internal_address_class_is_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.0.192",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(!allowed(ip), "{ip}");
        }
        assert!(allowed("172.32.0.1") && allowed("100.128.0.1") && allowed("11.0.0.1"));
    }

    #[test]
    fn the_loopback_allowance_allows_loopback_and_nothing_else() {
        let with = |ip: &str| address_allowed(ip.parse().unwrap(), true);
        assert!(with("127.0.0.1") && with("::1"));
        for ip in [
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "fd00:ec2::254",
        ] {
            assert!(!with(ip), "{ip}");
        }
    }
}
