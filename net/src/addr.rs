//! Which addresses may be fetched.
//!
//! A crawler follows links that anyone can write, so a page can point it at
//! `http://127.0.0.1:6379/` or at a cloud metadata service
//! (`http://169.254.169.254/`). After DNS resolution, and for every redirect,
//! fetchers check each address with [`AddressPolicy::check`]: loopback,
//! private, shared (CGNAT), link-local, multicast, broadcast, unspecified,
//! documentation and other reserved ranges are refused unless private
//! addresses are explicitly allowed (tests allow them to reach 127.0.0.1).
//! IPv4-mapped and IPv4-compatible IPv6 addresses are judged as the IPv4
//! address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 100.64/10 (carrier-grade NAT).
    Shared,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::, 255.255.255.255, and the other reserved ranges.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "loopback address",
            Refusal::Private => "private address",
            Refusal::Shared => "shared (CGNAT) address",
            Refusal::LinkLocal => "link-local address",
            Refusal::Multicast => "multicast address",
            Refusal::Reserved => "reserved address",
        })
    }
}

/// The address policy of a fetcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow loopback, private, shared and link-local addresses (`--allow-private`).
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Whether `ip` may be fetched; the reason if not.
    ///
    /// # Errors
    /// The [`Refusal`] that applies.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            None => Ok(()),
            Some(Refusal::Loopback | Refusal::Private | Refusal::Shared | Refusal::LinkLocal)
                if self.allow_private =>
            {
                Ok(())
            }
            Some(r) => Err(r),
        }
    }
}

/// The refusal that applies to `ip` under the default policy, if any.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.is_private() {
        Some(Refusal::Private)
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some(Refusal::Shared)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if o[0] == 0
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        Some(Refusal::Reserved)
    } else {
        None
    }
}

/// The IPv4 address carried in two 16-bit segments of an IPv6 address.
fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) carries an IPv4 address too.
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16) reach the IPv4
    // address they carry.
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1) {
        return classify_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return classify_v4(embedded_v4(s[1], s[2]));
    }
    if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if (s[0] & 0xffc0) == 0xfec0 {
        // Deprecated site-local: private in practice.
        Some(Refusal::Private)
    } else if ip.is_unspecified() {
        Some(Refusal::Reserved)
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some(Refusal::Private)
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some(Refusal::Reserved)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> Option<Refusal> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classifies_every_range() {
        for (ip, want) in [
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("10.1.2.3", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("172.32.0.1", None),
            ("192.168.0.1", Some(Refusal::Private)),
            ("100.64.0.1", Some(Refusal::Shared)),
            ("100.128.0.1", None),
            ("169.254.169.254", Some(Refusal::LinkLocal)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("0.0.0.0", Some(Refusal::Reserved)),
            ("255.255.255.255", Some(Refusal::Reserved)),
            ("192.0.2.1", Some(Refusal::Reserved)),
            ("198.18.0.1", Some(Refusal::Reserved)),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("::1", Some(Refusal::Loopback)),
            ("::", Some(Refusal::Reserved)),
            ("fd00::1", Some(Refusal::Private)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("::ffff:10.0.0.1", Some(Refusal::Private)),
            ("::127.0.0.1", Some(Refusal::Loopback)),
            ("2001:db8::1", Some(Refusal::Reserved)),
            ("64:ff9b::a00:1", Some(Refusal::Private)),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some(Refusal::Loopback)),
            ("fec0::1", Some(Refusal::Private)),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(refused(ip), want, "{ip}");
        }
    }

    #[test]
    fn allow_private_opens_only_private_ranges() {
        let open = AddressPolicy {
            allow_private: true,
        };
        assert!(open.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(open.check("192.168.1.1".parse().unwrap()).is_ok());
        assert_eq!(
            open.check("224.0.0.1".parse().unwrap()),
            Err(Refusal::Multicast)
        );
        assert_eq!(
            AddressPolicy::default().check("127.0.0.1".parse().unwrap()),
            Err(Refusal::Loopback)
        );
    }
}
