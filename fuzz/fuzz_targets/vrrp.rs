#![no_main]
//! The VRRP decoder sees whatever arrives on a raw socket: it must never panic, and whatever it
//! accepts must re-encode to the very bytes it was decoded from.

use libfuzzer_sys::fuzz_target;
use rwproxy_ha::vrrp::packet::{Advert, Delivery};

fuzz_target!(|data: &[u8]| {
    if let Ok((ip, advert)) = Advert::decode_ip(data, Delivery::Unicast) {
        let msg = &data[ip.header_len..ip.total_len];
        let again = advert
            .encode(ip.src, ip.dst)
            .expect("a decoded advert encodes");
        // v3's 4 reserved bits are ignored on receipt and sent as zero: that changes the
        // checksum too, so compare only packets that had them clear.
        let reserved_set = msg[0] >> 4 == 3 && msg[4] & 0xf0 != 0;
        if !reserved_set {
            assert_eq!(&again[..], msg);
        }
    }
    let src = std::net::Ipv4Addr::new(192, 0, 2, 11);
    let dst = std::net::Ipv4Addr::new(224, 0, 0, 18);
    let _ = Advert::decode(data, src, dst);
});
