//! Where deliveries may go. The check runs when connecting, not only when a webhook is
//! registered: the delivery client resolves names through [`GuardedResolver`], which drops every
//! address in a refused range (so a name that resolves elsewhere later, DNS rebinding, cannot
//! pass), and a URL whose host is a literal IP (which no resolver sees) is checked by
//! [`AddressGuard::refused_literal`] before each request.
//!
//! Refused unless `[webhooks] allow_addresses` allows them: loopback, unspecified, private,
//! shared (CGNAT), link-local (with the cloud metadata address 169.254.169.254), unique-local
//! (with `fd00:ec2::254`), multicast, broadcast, reserved and documentation ranges; an IPv6
//! address that carries an IPv4 one (mapped, compatible, NAT64) is judged by the IPv4 one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Which addresses webhooks may reach: every one outside the refused ranges, and those in the
/// operator's allowed ranges. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Arc<[IpNet]>,
}

impl AddressGuard {
    /// A guard that also allows `allowed` (the operator's `allow_addresses`).
    pub fn new(allowed: &[IpNet]) -> Self {
        AddressGuard {
            allowed: allowed.into(),
        }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_refused(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// The literal IP host of `url` when it is one that may not be reached (a resolver never
    /// sees a literal address).
    pub fn refused_literal(&self, url: &url::Url) -> Option<IpAddr> {
        let ip = match url.host()? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        (!self.permits(ip)).then_some(ip)
    }
}

/// A delivery's destination resolved only to addresses that may not be reached, or is one.
#[derive(Debug, thiserror::Error)]
#[error("{host} is (or resolves only to) addresses webhooks may not reach: {addresses:?}")]
pub struct AddressRefused {
    /// The host of the URL.
    pub host: String,
    /// What it resolved to (itself for a literal address).
    pub addresses: Vec<IpAddr>,
}

/// The delivery client's resolver: the system's, less the addresses the guard refuses; an
/// error ([`AddressRefused`]) when none is left.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) guard: AddressGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| guard.permits(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let addresses = found.iter().map(SocketAddr::ip).collect();
                return Err(Box::new(AddressRefused { host, addresses }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The IPv4 address an IPv6 one carries (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d`), which is where a connection to it ends up; else `ip`.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    let embedded = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let compatible = s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 {
        IpAddr::V4(embedded)
    } else {
        ip
    }
}

fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_refused_v4(ip),
        IpAddr::V6(ip) => is_refused_v6(ip),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0
        || ip.is_loopback()
        || ip.is_private()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64/10
        || ip.is_link_local() // 169.254/16, with the cloud metadata address
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18/15
        || ip.is_multicast()
        || a >= 240 // reserved, and the broadcast address
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first & 0xfe00) == 0xfc00 // unique-local, fc00::/7, with fd00:ec2::254
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || ip.segments()[..4] == [0x100, 0, 0, 0] // discard-only, 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_refused_range_is_refused_and_public_addresses_pass() {
        let guard = AddressGuard::default();
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "169.254.1.1",
            "192.0.0.192",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!guard.permits(ip(refused)), "{refused} passed");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(guard.permits(ip(public)), "{public} was refused");
        }
    }

    #[test]
    fn allowed_ranges_open_exactly_what_they_name() {
        let guard = AddressGuard::new(&["127.0.0.1/32".parse().unwrap()]);
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(guard.permits(ip("::ffff:127.0.0.1")));
        assert!(!guard.permits(ip("127.0.0.2")));
        assert!(!guard.permits(ip("::1")));
        assert!(!guard.permits(ip("10.0.0.1")));
        let url = |text: &str| url::Url::parse(text).unwrap();
        assert_eq!(guard.refused_literal(&url("http://127.0.0.1:9/h")), None);
        assert_eq!(
            guard.refused_literal(&url("http://[::1]:9/h")),
            Some(ip("::1"))
        );
        // Decimal and short forms are IPv4 literals to the URL parser, as to the connector.
        assert_eq!(
            AddressGuard::default().refused_literal(&url("http://2130706433/")),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            AddressGuard::default().refused_literal(&url("http://[::ffff:7f00:1]/")),
            Some(ip("::ffff:127.0.0.1"))
        );
        assert_eq!(guard.refused_literal(&url("http://localhost/")), None);
    }
}
