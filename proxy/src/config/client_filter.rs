//! Which client source addresses may connect (Atlas `client-ips`).

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// One parsed `client-ips` entry: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
}

impl Rule {
    fn matches(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Rule::V4 { net, prefix }, IpAddr::V4(a)) => masked32(u32::from(a), prefix) == net,
            (Rule::V6 { net, prefix }, IpAddr::V6(a)) => masked128(u128::from(a), prefix) == net,
            _ => false,
        }
    }
}

fn masked32(v: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn masked128(v: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(prefix)))
    }
}

/// Allow-list of client addresses built from `client_ips`.
///
/// Accepted entry forms:
/// * an exact address: `127.0.0.1`, `::1`;
/// * CIDR: `10.0.0.0/8`, `fd00::/8` (host bits may be set; they are ignored);
/// * Atlas's leading-octet prefix: `192.168.1` allows `192.168.1.0/24`, `10` allows `10.0.0.0/8`
///   (a trailing `.*`, as in `192.168.1.*`, is accepted as well).
///
/// An empty list allows everyone. IPv4 clients arriving on an IPv6 socket as `::ffff:a.b.c.d` are
/// matched against the IPv4 rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    rules: Vec<Rule>,
}

impl ClientFilter {
    /// Parse every entry; the error names the first bad entry.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientFilter { rules })
    }

    /// A filter that lets everyone in.
    pub fn allow_all() -> Self {
        ClientFilter::default()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let ip = ip.to_canonical();
        self.rules.iter().any(|r| r.matches(ip))
    }
}

/// One `client-ips` entry as the addresses it admits, so that entries compare equal however
/// they are written: `FE80::1` and `fe80::1`; `192.168.1`, `192.168.1.*` and `192.168.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEntry(Rule);

impl FromStr for ClientEntry {
    type Err = String;

    /// Accepts exactly the forms [`ClientFilter`] does; the error names the entry.
    fn from_str(entry: &str) -> Result<Self, String> {
        parse_rule(entry).map(ClientEntry)
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let s = entry.trim();
    let bad = |why: &str| format!("invalid client address '{s}': {why}");
    if s.is_empty() {
        return Err(bad("empty entry"));
    }
    if let Some((addr, len)) = s.split_once('/') {
        let prefix: u8 = len
            .parse()
            .map_err(|_| bad("prefix length is not a number"))?;
        return match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if prefix <= 32 => Ok(Rule::V4 {
                net: masked32(u32::from(a), prefix),
                prefix,
            }),
            Ok(IpAddr::V6(a)) if prefix <= 128 => Ok(Rule::V6 {
                net: masked128(u128::from(a), prefix),
                prefix,
            }),
            Ok(_) => Err(bad("prefix length too large")),
            Err(_) => Err(bad("expected an IP address before '/'")),
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(match ip.to_canonical() {
            IpAddr::V4(a) => Rule::V4 {
                net: u32::from(a),
                prefix: 32,
            },
            IpAddr::V6(a) => Rule::V6 {
                net: u128::from(a),
                prefix: 128,
            },
        });
    }
    // Atlas prefix form: one to three leading octets.
    let body = s.strip_suffix(".*").unwrap_or(s);
    let octets: Vec<&str> = body.split('.').collect();
    if octets.len() > 3 || s.contains(':') {
        return Err(bad(
            "expected an IP address, a CIDR block or leading octets like 192.168.1",
        ));
    }
    let mut bytes = [0u8; 4];
    for (i, o) in octets.iter().enumerate() {
        if o.is_empty() || o.len() > 3 || !o.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "expected an IP address, a CIDR block or leading octets like 192.168.1",
            ));
        }
        bytes[i] = o.parse().map_err(|_| bad("octet out of range 0-255"))?;
    }
    Ok(Rule::V4 {
        net: u32::from(Ipv4Addr::from(bytes)),
        prefix: 8 * octets.len() as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_allows_everyone() {
        let f = ClientFilter::new::<&str>(&[]).unwrap();
        assert!(f.allows(ip("1.2.3.4")));
        assert!(f.allows(ip("::1")));
        assert!(ClientFilter::allow_all().allows(ip("10.9.8.7")));
    }

    #[test]
    fn exact_addresses() {
        let f = ClientFilter::new(&["127.0.0.1", "::1"]).unwrap();
        assert!(f.allows(ip("127.0.0.1")));
        assert!(!f.allows(ip("127.0.0.2")));
        assert!(f.allows(ip("::1")));
        assert!(!f.allows(ip("::2")));
    }

    #[test]
    fn cidr_blocks() {
        let f = ClientFilter::new(&["10.0.0.0/8", "172.16.5.9/12", "fd00::/8", "0.0.0.0/0"]);
        let f = f.unwrap();
        assert!(f.allows(ip("10.255.1.2")));
        assert!(f.allows(ip("172.31.0.1")));
        assert!(f.allows(ip("fdab::1")));
        assert!(!f.allows(ip("fe80::1")));
        // /0 matches every IPv4 client but no IPv6 one.
        assert!(f.allows(ip("8.8.8.8")));

        let f = ClientFilter::new(&["192.168.0.0/16"]).unwrap();
        assert!(f.allows(ip("192.168.200.3")));
        assert!(!f.allows(ip("192.169.0.1")));
    }

    #[test]
    fn atlas_prefix_form() {
        let f = ClientFilter::new(&["192.168.1", "10", " 172.16.* "]).unwrap();
        assert!(f.allows(ip("192.168.1.77")));
        assert!(!f.allows(ip("192.168.10.1")));
        assert!(!f.allows(ip("192.168.2.1")));
        assert!(f.allows(ip("10.1.2.3")));
        assert!(f.allows(ip("172.16.9.9")));
        assert!(!f.allows(ip("172.17.0.1")));
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_rules() {
        let f = ClientFilter::new(&["192.168.1"]).unwrap();
        assert!(f.allows(ip("::ffff:192.168.1.5")));
        assert!(!f.allows(ip("::ffff:192.168.2.5")));
    }

    #[test]
    fn entries_compare_by_the_addresses_they_admit() {
        let e = |s: &str| s.parse::<ClientEntry>().unwrap();
        assert_eq!(e("FE80::1"), e("fe80::1"));
        assert_eq!(e("fe80:0:0::1"), e("fe80::1"));
        assert_eq!(e("192.168.1"), e("192.168.1.*"));
        assert_eq!(e("192.168.1"), e("192.168.1.0/24"));
        assert_eq!(e("10.0.0.9/8"), e("10"));
        assert_eq!(e("::ffff:10.0.0.1"), e("10.0.0.1"));
        assert_ne!(e("192.168.1"), e("192.168.1.0"));
        assert_ne!(e("10.0.0.0/8"), e("10.0.0.0/16"));
        let err = "192.168.1.*.*".parse::<ClientEntry>().unwrap_err();
        assert!(
            err.contains("invalid client address '192.168.1.*.*'"),
            "{err}"
        );
    }

    #[test]
    fn invalid_entries_are_errors() {
        for bad in [
            "",
            "foo",
            "192.168.1.300",
            "1.2.3.4.5",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "host.example/8",
            "1..2",
            "256",
            "-1",
        ] {
            let err = ClientFilter::new(&[bad]).unwrap_err();
            assert!(err.contains("invalid client address"), "{bad}: {err}");
        }
    }
}
