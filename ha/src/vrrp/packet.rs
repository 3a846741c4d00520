//! VRRP advertisement encoding and decoding.
//!
//! VRRPv2 (RFC 3768): `ver|type VRID PRIO COUNT AUTHTYPE ADVINT(s) CSUM`, the addresses, then
//! 8 bytes of authentication data (keepalived's `auth_pass` is authentication type 1, the
//! password zero-padded to 8 bytes). The checksum covers the VRRP message only.
//!
//! VRRPv3 (RFC 5798, IPv4 only here): `ver|type VRID PRIO COUNT rsvd|MAXADVINT(12 bits, cs) CSUM`
//! and the addresses; the checksum covers an IPv4 pseudo-header (src, dst, 0, 112, length) too.
//!
//! TTL and the IP header are checked by [`Ipv4Header::parse`] and the receiver, not here.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The VRRP multicast group (RFC 3768 §5.2.2, RFC 5798 §5.1.1.2).
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a VRRP packet may carry.
pub const VRRP_TTL: u8 = 255;
/// Advertisement, the only VRRP packet type.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// The priority of the router that owns the virtual addresses (RFC 5798 §5.2.4): it takes
/// over at once, and its adverts are followed even when their address lists differ.
pub const PRIORITY_OWNER: u8 = 255;

/// What a packet failed on. A packet that fails is counted and logged, never acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet too short: {0} bytes")]
    TooShort(usize),
    #[error("bad VRRP version {0}")]
    BadVersion(u8),
    #[error("bad VRRP packet type {0}")]
    BadType(u8),
    #[error("VRRP length {len} does not match {count} addresses (expected {expected})")]
    CountMismatch {
        len: usize,
        count: u8,
        expected: usize,
    },
    #[error("bad checksum {got:#06x}, expected {want:#06x}")]
    BadChecksum { got: u16, want: u16 },
    #[error("bad IPv4 header: {0}")]
    BadIpHeader(&'static str),
    #[error("IP protocol {0} is not VRRP")]
    BadProtocol(u8),
    #[error("invalid TTL {0} (must be 255)")]
    BadTtl(u8),
    #[error("advert interval {0} out of range")]
    BadInterval(u16),
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// How an instance's adverts travel, which decides whether their TTL is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Multicast,
    Unicast,
}

/// VRRPv2 authentication (RFC 3768 §5.3.6; type 2, IP AH, is obsolete and not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Type 0; the 8 data bytes are carried as received (keepalived sends zeroes).
    None([u8; 8]),
    /// Type 1, keepalived's `auth_type PASS`: the password, zero-padded to 8 bytes.
    Simple([u8; 8]),
    /// Any other type, kept so that it can be reported (and re-encoded unchanged).
    Other(u8, [u8; 8]),
}

impl Auth {
    /// keepalived's `auth_pass`: at most 8 bytes are used, the rest is ignored.
    pub fn simple(pass: &str) -> Auth {
        let mut data = [0u8; 8];
        let b = pass.as_bytes();
        let n = b.len().min(8);
        data[..n].copy_from_slice(&b[..n]);
        Auth::Simple(data)
    }

    /// Whether a received advert's authentication is what this instance expects. Type 0's
    /// data is ignored on receipt (RFC 3768 §5.3.6.1): a peer that sends non-zero padding
    /// must not be dropped (both sides would then hold the VIP).
    pub fn accepts(&self, received: &Auth) -> bool {
        match (self, received) {
            (Auth::None(_), Auth::None(_)) => true,
            _ => self == received,
        }
    }

    fn type_and_data(&self) -> (u8, [u8; 8]) {
        match *self {
            Auth::None(d) => (0, d),
            Auth::Simple(d) => (1, d),
            Auth::Other(t, d) => (t, d),
        }
    }
}

/// A decoded VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// v2: seconds (8 bits). v3: centiseconds (12 bits).
    pub interval: u16,
    pub addrs: Vec<Ipv4Addr>,
    /// Always `Auth::None([0; 8])` for v3 (which has no authentication).
    pub auth: Auth,
}

/// The fields of an IPv4 header the receiver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Header length in bytes (where the payload starts).
    pub header_len: usize,
    /// Total length from the header.
    pub total_len: usize,
}

impl Ipv4Header {
    /// Parses the IPv4 header a raw socket delivers in front of the payload and checks that the
    /// buffer holds the whole datagram. Checks no TTL or protocol: see [`Ipv4Header::check_vrrp`].
    pub fn parse(buf: &[u8]) -> Result<Ipv4Header, PacketError> {
        if buf.len() < 20 {
            return Err(PacketError::TooShort(buf.len()));
        }
        if buf[0] >> 4 != 4 {
            return Err(PacketError::BadIpHeader("not IPv4"));
        }
        let header_len = usize::from(buf[0] & 0x0f) * 4;
        if header_len < 20 || header_len > buf.len() {
            return Err(PacketError::BadIpHeader("bad header length"));
        }
        let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total_len < header_len || total_len > buf.len() {
            return Err(PacketError::BadIpHeader("bad total length"));
        }
        Ok(Ipv4Header {
            ttl: buf[8],
            protocol: buf[9],
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            header_len,
            total_len,
        })
    }

    /// Protocol 112, and TTL 255 for multicast, as both RFCs and keepalived require: a
    /// multicast advert that a router forwarded came from another segment. Unicast adverts
    /// may cross routers (peers in other subnets), and keepalived checks no TTL for them.
    pub fn check_vrrp(&self, delivery: Delivery) -> Result<(), PacketError> {
        if self.protocol != IPPROTO_VRRP {
            return Err(PacketError::BadProtocol(self.protocol));
        }
        if delivery == Delivery::Multicast && self.ttl != VRRP_TTL {
            return Err(PacketError::BadTtl(self.ttl));
        }
        Ok(())
    }
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`, each of even length except
/// possibly the last.
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn v3_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = IPPROTO_VRRP;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// The checksum a VRRP message should carry (with its checksum field taken as zero).
fn compute_checksum(version: Version, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let mut zeroed = msg.to_vec();
    zeroed[6] = 0;
    zeroed[7] = 0;
    match version {
        Version::V2 => inet_checksum(&[&zeroed]),
        Version::V3 => inet_checksum(&[&v3_pseudo_header(src, dst, msg.len()), &zeroed]),
    }
}

impl Advert {
    /// Decodes a VRRP message (the IP payload). `src` and `dst` are the IP addresses it came
    /// with: VRRPv3's checksum covers them.
    pub fn decode(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, PacketError> {
        if msg.len() < 8 {
            return Err(PacketError::TooShort(msg.len()));
        }
        let version = match msg[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(PacketError::BadVersion(v)),
        };
        let ptype = msg[0] & 0x0f;
        if ptype != TYPE_ADVERTISEMENT {
            return Err(PacketError::BadType(ptype));
        }
        let count = msg[3];
        let trailer = match version {
            Version::V2 => 8,
            Version::V3 => 0,
        };
        let expected = 8 + 4 * usize::from(count) + trailer;
        if msg.len() != expected {
            return Err(PacketError::CountMismatch {
                len: msg.len(),
                count,
                expected,
            });
        }
        let got = u16::from_be_bytes([msg[6], msg[7]]);
        let want = compute_checksum(version, msg, src, dst);
        if got != want {
            return Err(PacketError::BadChecksum { got, want });
        }
        let addrs = msg[8..8 + 4 * usize::from(count)]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        let (interval, auth) = match version {
            Version::V2 => {
                let mut data = [0u8; 8];
                data.copy_from_slice(&msg[msg.len() - 8..]);
                let auth = match msg[4] {
                    0 => Auth::None(data),
                    1 => Auth::Simple(data),
                    t => Auth::Other(t, data),
                };
                (u16::from(msg[5]), auth)
            }
            Version::V3 => {
                // The 4 reserved bits are ignored on receipt (RFC 5798 §5.2.5).
                let interval = u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff;
                (interval, Auth::None([0; 8]))
            }
        };
        Ok(Advert {
            version,
            vrid: msg[1],
            priority: msg[2],
            interval,
            addrs,
            auth,
        })
    }

    /// Decodes a whole IPv4 datagram as a raw socket delivers it: header checks (protocol 112,
    /// TTL 255) then the VRRP message. Returns the header too (the sender's address).
    pub fn decode_ip(
        datagram: &[u8],
        delivery: Delivery,
    ) -> Result<(Ipv4Header, Advert), PacketError> {
        let ip = Ipv4Header::parse(datagram)?;
        ip.check_vrrp(delivery)?;
        let advert = Advert::decode(&datagram[ip.header_len..ip.total_len], ip.src, ip.dst)?;
        Ok((ip, advert))
    }

    /// Encodes the VRRP message (the IP payload) as sent from `src` to `dst`.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, PacketError> {
        let count = u8::try_from(self.addrs.len()).map_err(|_| PacketError::CountMismatch {
            len: self.addrs.len(),
            count: u8::MAX,
            expected: 255,
        })?;
        let mut msg = Vec::with_capacity(16 + 4 * self.addrs.len());
        msg.push((self.version.number() << 4) | TYPE_ADVERTISEMENT);
        msg.push(self.vrid);
        msg.push(self.priority);
        msg.push(count);
        match self.version {
            Version::V2 => {
                let secs = u8::try_from(self.interval)
                    .map_err(|_| PacketError::BadInterval(self.interval))?;
                msg.push(self.auth.type_and_data().0);
                msg.push(secs);
            }
            Version::V3 => {
                if self.interval > 0x0fff {
                    return Err(PacketError::BadInterval(self.interval));
                }
                msg.extend_from_slice(&self.interval.to_be_bytes());
            }
        }
        msg.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            msg.extend_from_slice(&a.octets());
        }
        if self.version == Version::V2 {
            msg.extend_from_slice(&self.auth.type_and_data().1);
        }
        let csum = compute_checksum(self.version, &msg, src, dst);
        msg[6..8].copy_from_slice(&csum.to_be_bytes());
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const V2_ADVERT: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv2-advert.ip.hex");
    const V2_PRIO0: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv2-prio0.ip.hex");
    const V3_ADVERT: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv3-advert.ip.hex");
    const V3_PRIO0: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv3-prio0.ip.hex");
    const V2_FRAME: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv2-advert.frame.hex");
    const V3_FRAME: &str = include_str!("../../tests/data/vrrp/keepalived-vrrpv3-prio0.frame.hex");

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

    fn roundtrip(vector: &str, version: Version, priority: u8, interval: u16) {
        let datagram = hex(vector);
        let (ip, adv) = Advert::decode_ip(&datagram, Delivery::Multicast).unwrap();
        assert_eq!(ip.src, SRC);
        assert_eq!(ip.dst, VRRP_GROUP);
        assert_eq!(ip.ttl, 255);
        assert_eq!(
            adv,
            Advert {
                version,
                vrid: 51,
                priority,
                interval,
                addrs: vec![VIP],
                auth: Auth::None([0; 8]),
            }
        );
        let encoded = adv.encode(ip.src, ip.dst).unwrap();
        assert_eq!(encoded, &datagram[ip.header_len..], "re-encoding differs");
    }

    #[test]
    fn keepalived_v2_advert() {
        roundtrip(V2_ADVERT, Version::V2, 150, 1);
    }

    #[test]
    fn keepalived_v2_prio0() {
        roundtrip(V2_PRIO0, Version::V2, 0, 1);
    }

    #[test]
    fn keepalived_v3_advert() {
        roundtrip(V3_ADVERT, Version::V3, 150, 100);
    }

    #[test]
    fn keepalived_v3_prio0() {
        roundtrip(V3_PRIO0, Version::V3, 0, 100);
    }

    #[test]
    fn ethernet_frames_carry_the_same_datagrams() {
        // 14-byte Ethernet header, destination the VRRP multicast MAC 01:00:5e:00:00:12,
        // source the virtual router MAC 00:00:5e:00:01:VRID only with use_vmac (not here).
        for (frame, ip) in [(V2_FRAME, V2_ADVERT), (V3_FRAME, V3_PRIO0)] {
            let frame = hex(frame);
            assert_eq!(&frame[0..6], &[0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
            assert_eq!(&frame[12..14], &[0x08, 0x00]);
            assert_eq!(&frame[14..], &hex(ip)[..]);
            Advert::decode_ip(&frame[14..], Delivery::Multicast).unwrap();
        }
    }

    #[test]
    fn v3_checksum_covers_the_pseudo_header() {
        let datagram = hex(V3_ADVERT);
        let msg = &datagram[20..];
        let err = Advert::decode(msg, Ipv4Addr::new(192, 0, 2, 12), VRRP_GROUP).unwrap_err();
        assert!(matches!(err, PacketError::BadChecksum { .. }), "{err:?}");
        // v2's does not.
        let datagram = hex(V2_ADVERT);
        Advert::decode(&datagram[20..], Ipv4Addr::new(192, 0, 2, 12), VRRP_GROUP).unwrap();
    }

    #[test]
    fn simple_auth_roundtrip() {
        let adv = Advert {
            version: Version::V2,
            vrid: 7,
            priority: 100,
            interval: 1,
            addrs: vec![VIP, Ipv4Addr::new(192, 0, 2, 101)],
            auth: Auth::simple("secret-longer-than-8"),
        };
        let msg = adv.encode(SRC, VRRP_GROUP).unwrap();
        assert_eq!(msg[4], 1);
        assert_eq!(&msg[msg.len() - 8..], b"secret-l");
        assert_eq!(Advert::decode(&msg, SRC, VRRP_GROUP).unwrap(), adv);
    }

    #[test]
    fn validation_errors() {
        let good = hex(V2_ADVERT)[20..].to_vec();
        let d = |m: &[u8]| Advert::decode(m, SRC, VRRP_GROUP).unwrap_err();
        assert_eq!(d(&good[..7]), PacketError::TooShort(7));
        let mut m = good.clone();
        m[0] = 0x41;
        assert_eq!(d(&m), PacketError::BadVersion(4));
        let mut m = good.clone();
        m[0] = 0x22;
        assert_eq!(d(&m), PacketError::BadType(2));
        let mut m = good.clone();
        m[3] = 2;
        assert!(matches!(d(&m), PacketError::CountMismatch { count: 2, .. }));
        assert!(matches!(d(&good[..19]), PacketError::CountMismatch { .. }));
        let mut m = good.clone();
        m[2] = 151;
        assert!(matches!(d(&m), PacketError::BadChecksum { .. }));

        let mut ip = hex(V2_ADVERT);
        ip[8] = 254;
        assert_eq!(
            Advert::decode_ip(&ip, Delivery::Multicast).unwrap_err(),
            PacketError::BadTtl(254)
        );
        // A unicast peer may be routers away (the IP checksum is not checked: the kernel did).
        Advert::decode_ip(&ip, Delivery::Unicast).unwrap();
        let mut ip = hex(V2_ADVERT);
        ip[9] = 6;
        assert_eq!(
            Advert::decode_ip(&ip, Delivery::Unicast).unwrap_err(),
            PacketError::BadProtocol(6)
        );
        let ip = hex(V2_ADVERT);
        assert!(matches!(
            Advert::decode_ip(&ip[..30], Delivery::Multicast).unwrap_err(),
            PacketError::BadIpHeader(_)
        ));
    }

    #[test]
    fn encode_rejects_out_of_range_intervals() {
        let mut adv = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 1,
            interval: 4096,
            addrs: vec![],
            auth: Auth::None([0; 8]),
        };
        assert_eq!(
            adv.encode(SRC, VRRP_GROUP),
            Err(PacketError::BadInterval(4096))
        );
        adv.version = Version::V2;
        adv.interval = 256;
        assert_eq!(
            adv.encode(SRC, VRRP_GROUP),
            Err(PacketError::BadInterval(256))
        );
    }
}
