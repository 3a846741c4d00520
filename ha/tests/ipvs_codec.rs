//! Every IPVS request we build is byte-identical to what ipvsadm 1.31 sent to a real kernel
//! (`data/ipvs/ipvsadm-netlink.txt`, generic netlink payloads without seq/pid), and the kernel's
//! replies captured with it (`data/ipvs/ipvsadm-strace.txt`) parse.

use neli::consts::nl::NlmF;
use rwproxy_ha::ipvs::{genl, Dest, Request, Service, ServiceKey};

const VECTORS: &str = include_str!("data/ipvs/ipvsadm-netlink.txt");
const STRACE: &str = include_str!("data/ipvs/ipvsadm-strace.txt");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Vector<'a> {
    command: &'a str,
    name: &'a str,
    nlmsg_len: usize,
    nlmsg_type: u16,
    flags: u16,
    payload: Vec<u8>,
}

fn vectors() -> Vec<Vector<'static>> {
    VECTORS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split(" | ").collect();
            assert_eq!(parts.len(), 3, "{l}");
            let mut words = parts[1].split_whitespace();
            let name = words.next().unwrap();
            let mut field = |prefix: &str| {
                let w = words.next().unwrap();
                w.strip_prefix(prefix).unwrap().to_string()
            };
            let nlmsg_len = field("nlmsg_len=").parse().unwrap();
            let nlmsg_type =
                u16::from_str_radix(field("nlmsg_type=").trim_start_matches("0x"), 16).unwrap();
            let flags = u16::from_str_radix(field("flags=").trim_start_matches("0x"), 16).unwrap();
            Vector {
                command: parts[0],
                name,
                nlmsg_len,
                nlmsg_type,
                flags,
                payload: hex(parts[2].trim()),
            }
        })
        .collect()
}

fn key() -> ServiceKey {
    ServiceKey::tcp("10.0.0.1".parse().unwrap(), 3306)
}

fn real(weight: u32) -> Dest {
    Dest {
        weight,
        ..Dest::new("10.0.0.2:3306".parse().unwrap())
    }
}

/// What our API calls for the same ipvsadm command line.
fn ours(v: &Vector) -> Request {
    match (v.name, v.command) {
        ("GET_INFO", _) => Request::GetInfo,
        ("NEW_SERVICE", "ipvsadm -A -t 10.0.0.1:3306 -s wrr") => {
            Request::NewService(Service::new(key(), "wrr"))
        }
        ("NEW_DEST", "ipvsadm -a -t 10.0.0.1:3306 -r 10.0.0.2:3306 -g -w 3") => {
            Request::NewDest(key(), real(3))
        }
        ("SET_DEST", "ipvsadm -e -t 10.0.0.1:3306 -r 10.0.0.2:3306 -g -w 0") => {
            Request::SetDest(key(), real(0))
        }
        ("DEL_DEST", "ipvsadm -d -t 10.0.0.1:3306 -r 10.0.0.2:3306") => {
            Request::DelDest(key(), "10.0.0.2:3306".parse().unwrap())
        }
        ("DEL_SERVICE", "ipvsadm -D -t 10.0.0.1:3306") => Request::DelService(key()),
        other => panic!("no mapping for vector {other:?}"),
    }
}

const REQUEST_ACK: u16 = 0x0005;

#[test]
fn requests_are_byte_identical_to_ipvsadm() {
    let all = vectors();
    assert_eq!(all.len(), 25);
    let mut kinds = std::collections::BTreeSet::new();
    for v in &all {
        kinds.insert(v.name);
        assert_eq!(v.nlmsg_len, 16 + v.payload.len(), "{}", v.name);
        let bytes = if v.name == "CTRL_GETFAMILY" {
            assert_eq!(v.nlmsg_type, 0x10);
            genl::to_bytes(&genl::get_family().unwrap()).unwrap()
        } else {
            // The family id the capture's kernel assigned IPVS.
            assert_eq!(v.nlmsg_type, 0x20);
            let req = ours(v);
            assert_eq!(
                u16::from(req.flags() | NlmF::REQUEST),
                REQUEST_ACK,
                "{}",
                v.name
            );
            genl::to_bytes(&req.to_genl().unwrap()).unwrap()
        };
        assert_eq!(v.flags, REQUEST_ACK);
        assert_eq!(
            bytes, v.payload,
            "{} ({}) differs from ipvsadm",
            v.name, v.command
        );
    }
    assert_eq!(kinds.len(), 7, "{kinds:?}");
}

/// The genl payload of the first complete (non-peek) reply of `nlmsg_type` in the strace.
fn reply(nlmsg_type: &str) -> Vec<u8> {
    let line = STRACE
        .lines()
        .find(|l| {
            l.starts_with("recvmsg")
                && !l.contains("MSG_PEEK")
                && l.contains(&format!("nlmsg_type={nlmsg_type} "))
        })
        .unwrap_or_else(|| panic!("no {nlmsg_type} reply in the capture"));
    let start = line.find("}, \"").unwrap() + 4;
    let end = start + line[start..].find('"').unwrap();
    hex(&line[start..end].replace("\\x", ""))
}

#[test]
fn kernel_replies_parse() {
    let fam = reply("0x10");
    let msg = genl::family_reply_from_bytes(&fam).unwrap();
    assert_eq!(genl::family_id(&msg).unwrap(), 0x20);

    let info = genl::parse_info(&genl::from_bytes(&reply("0x20")).unwrap()).unwrap();
    assert_eq!((info.version, info.conn_tab_size), (0x010201, 4096));
    assert_eq!(
        info.to_string(),
        "IP Virtual Server version 1.2.1 (size=4096)"
    );
    // ipvsadm printed exactly that header in the capture.
    assert!(STRACE.contains(&format!("{info}\n")));
}

#[test]
fn decode_inverts_encode() {
    let svc = Service::new(key(), "wlc").with_persistence(300, 24);
    let msg = genl::from_bytes(
        &genl::to_bytes(&Request::NewService(svc.clone()).to_genl().unwrap()).unwrap(),
    )
    .unwrap();
    let parsed = genl::parse_service(&msg).unwrap();
    assert_eq!(parsed.service, svc);
    assert_eq!(parsed.service.netmask_v4().to_string(), "255.255.255.0");

    let d = Dest {
        forward: rwproxy_ha::ipvs::Forward::Masq,
        upper_threshold: 100,
        lower_threshold: 10,
        ..real(7)
    };
    let msg = genl::from_bytes(
        &genl::to_bytes(&Request::NewDest(key(), d.clone()).to_genl().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        genl::parse_dest(&msg, rwproxy_ha::ipvs::Family::V4)
            .unwrap()
            .dest,
        d
    );
}

#[test]
fn errnos_become_sentences() {
    use rwproxy_ha::ipvs::map_errno;
    let svc = Request::NewService(Service::new(key(), "nosuch"));
    let e = |r: &Request, n| map_errno(r, n).to_string();
    assert_eq!(
        e(&svc, libc::EEXIST),
        "virtual service TCP 10.0.0.1:3306 already exists"
    );
    assert_eq!(
        e(&svc, libc::ENOENT),
        "scheduler \"nosuch\" is not available in this kernel (no ip_vs_nosuch module)"
    );
    assert_eq!(
        e(&Request::NewDest(key(), real(1)), libc::ESRCH),
        "virtual service TCP 10.0.0.1:3306 does not exist"
    );
    assert_eq!(
        e(
            &Request::DelDest(key(), "10.0.0.9:3306".parse().unwrap()),
            libc::ENOENT
        ),
        "real server 10.0.0.9:3306 is not in virtual service TCP 10.0.0.1:3306"
    );
    assert!(e(&svc, libc::EINVAL).contains("invalid argument"));
    assert!(e(&svc, libc::EPERM).contains("root"));
}
