//! Session-state information in OK packets (`CLIENT_SESSION_TRACK`).
//!
//! Backend connections always ask for it, so the proxy learns what a statement did to the
//! session even when it cannot tell from the SQL (a procedure changing `time_zone`, the GTID a
//! write was committed under). Clients get exactly what the server would send them directly:
//! nothing when they did not ask for tracking, and without the entries only the proxy asked
//! for when they did.

use super::packet::{read_lenenc, write_lenenc};

/// Status flag: the OK packet carries a session-state block.
pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

/// Entry types of the session-state block.
const SESSION_TRACK_SYSTEM_VARIABLES: u8 = 0;
const SESSION_TRACK_SCHEMA: u8 = 1;
const SESSION_TRACK_TRANSACTION_CHARACTERISTICS: u8 = 4;
const SESSION_TRACK_TRANSACTION_STATE: u8 = 5;

/// Entry types (as bits of a mask over the type number) that `session_track_transaction_info`
/// adds: `STATE` reports the transaction's state, `CHARACTERISTICS` both.
pub const TRANSACTION_STATE_ENTRIES: u8 = 1 << SESSION_TRACK_TRANSACTION_STATE;
pub const TRANSACTION_INFO_ENTRIES: u8 =
    TRANSACTION_STATE_ENTRIES | 1 << SESSION_TRACK_TRANSACTION_CHARACTERISTICS;

/// What one reply told the proxy about the session, in order of arrival.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateChanges {
    /// The new default schema.
    pub schema: Option<String>,
    /// (variable name, new value) for each tracked system variable the statement changed.
    pub vars: Vec<(String, String)>,
    /// Whether characteristics are now set for the next transaction (`SET TRANSACTION`):
    /// `Some(false)` when the statement used them up. Reported only with
    /// `session_track_transaction_info = CHARACTERISTICS`.
    pub next_transaction_set: Option<bool>,
    /// An EOF packet raised the state-changed flag: something changed that no packet of the
    /// reply reported (an EOF has no room for it).
    pub unreported: bool,
}

impl StateChanges {
    pub fn is_empty(&self) -> bool {
        self.schema.is_none()
            && self.vars.is_empty()
            && self.next_transaction_set.is_none()
            && !self.unreported
    }

    /// The last reported value of `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Later replies of one exchange (multi-results) override earlier ones.
    pub fn merge(&mut self, later: StateChanges) {
        if later.schema.is_some() {
            self.schema = later.schema;
        }
        if later.next_transaction_set.is_some() {
            self.next_transaction_set = later.next_transaction_set;
        }
        self.unreported |= later.unreported;
        self.vars.extend(later.vars);
    }
}

/// Byte ranges of an OK packet sent to a client with `CLIENT_SESSION_TRACK`.
struct OkLayout {
    /// Offset of the two status bytes.
    status_at: usize,
    /// The info string's contents.
    info: std::ops::Range<usize>,
    /// The session-state block's contents, when the status flag announces one.
    state: Option<std::ops::Range<usize>>,
}

fn layout(payload: &[u8]) -> Option<OkLayout> {
    let mut b = payload.get(1..)?;
    read_lenenc(&mut b)?;
    read_lenenc(&mut b)?;
    let status_at = payload.len() - b.len();
    if b.len() < 4 {
        return None;
    }
    let status = u16::from_le_bytes([b[0], b[1]]);
    b = &b[4..];
    if b.is_empty() {
        let end = payload.len();
        return Some(OkLayout {
            status_at,
            info: end..end,
            state: None,
        });
    }
    let info_len = usize::try_from(read_lenenc(&mut b)?).ok()?;
    let info_start = payload.len() - b.len();
    let info = info_start..info_start.checked_add(info_len)?;
    if info.end > payload.len() {
        return None;
    }
    let mut state = None;
    if status & SERVER_SESSION_STATE_CHANGED != 0 {
        let mut rest = &payload[info.end..];
        let len = usize::try_from(read_lenenc(&mut rest)?).ok()?;
        let start = payload.len() - rest.len();
        let end = start.checked_add(len)?;
        if end > payload.len() {
            return None;
        }
        state = Some(start..end);
    }
    Some(OkLayout {
        status_at,
        info,
        state,
    })
}

/// One entry of a session-state block: its type and its whole encoding.
fn entries(block: &[u8]) -> impl Iterator<Item = (u8, &[u8], &[u8])> {
    let mut rest = block;
    std::iter::from_fn(move || {
        let start = rest;
        let (&kind, mut b) = rest.split_first()?;
        let len = usize::try_from(read_lenenc(&mut b)?).ok()?;
        let data = b.get(..len)?;
        rest = &b[len..];
        let whole = &start[..start.len() - rest.len()];
        Some((kind, data, whole))
    })
}

fn lenenc_str<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_lenenc(b)?).ok()?;
    let s = b.get(..len)?;
    *b = &b[len..];
    Some(s)
}

/// The system variable an entry reports, as (name, value).
fn variable(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut b = data;
    let name = lenenc_str(&mut b)?;
    let value = lenenc_str(&mut b)?;
    Some((name, value))
}

/// Reads the session-state block of an OK packet from a backend; `None` when the packet
/// carries none (or is malformed, which the proxy then simply does not learn from).
pub fn parse(payload: &[u8]) -> Option<StateChanges> {
    let range = layout(payload)?.state?;
    let mut out = StateChanges::default();
    for (kind, data, _) in entries(&payload[range]) {
        match kind {
            SESSION_TRACK_SYSTEM_VARIABLES => {
                if let Some((name, value)) = variable(data) {
                    out.vars.push((
                        String::from_utf8_lossy(name).to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into_owned(),
                    ));
                }
            }
            SESSION_TRACK_SCHEMA => {
                let mut b = data;
                if let Some(db) = lenenc_str(&mut b) {
                    out.schema = Some(String::from_utf8_lossy(db).into_owned());
                }
            }
            SESSION_TRACK_TRANSACTION_CHARACTERISTICS => {
                // The statements that would set the same characteristics again, or nothing.
                let mut b = data;
                if let Some(statements) = lenenc_str(&mut b) {
                    out.next_transaction_set = Some(!statements.is_empty());
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// The OK packet a client should get instead of `payload`, or `None` when it can have the
/// backend's as is. `client_tracks`: the client negotiated `CLIENT_SESSION_TRACK`; `hidden`:
/// system variables only the proxy asked the backend to track; `hidden_entries`: entry
/// types (bits by type number) likewise.
pub fn client_ok(
    payload: &[u8],
    client_tracks: bool,
    hidden: &[&str],
    hidden_entries: u8,
) -> Option<Vec<u8>> {
    let l = layout(payload)?;
    let state = l.state.clone()?;
    let kept: Vec<u8> = if client_tracks {
        let mut kept = Vec::with_capacity(state.len());
        let mut dropped = false;
        for (kind, data, whole) in entries(&payload[state.clone()]) {
            let hide = (kind < 8 && hidden_entries & (1 << kind) != 0)
                || kind == SESSION_TRACK_SYSTEM_VARIABLES
                    && variable(data).is_some_and(|(name, _)| {
                        hidden
                            .iter()
                            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
                    });
            if hide {
                dropped = true;
            } else {
                kept.extend_from_slice(whole);
            }
        }
        if !dropped {
            return None;
        }
        kept
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..l.status_at]);
    let mut status = u16::from_le_bytes([payload[l.status_at], payload[l.status_at + 1]]);
    if kept.is_empty() {
        status &= !SERVER_SESSION_STATE_CHANGED;
    }
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&payload[l.status_at + 2..l.status_at + 4]);
    // A server writes the info string only when it has one or a state block follows.
    if !kept.is_empty() || !l.info.is_empty() {
        write_lenenc(&mut out, l.info.len() as u64);
        out.extend_from_slice(&payload[l.info.clone()]);
    }
    if !kept.is_empty() {
        write_lenenc(&mut out, kept.len() as u64);
        out.extend_from_slice(&kept);
    }
    Some(out)
}

/// The EOF packet a client without session tracking should get instead of `payload`: a
/// server never sets the state-changed flag for such a client.
pub fn client_eof(payload: &[u8], client_tracks: bool) -> Option<Vec<u8>> {
    let status = u16::from_le_bytes([*payload.get(3)?, *payload.get(4)?]);
    if client_tracks || status & SERVER_SESSION_STATE_CHANGED == 0 {
        return None;
    }
    let mut out = payload.to_vec();
    out[3..5].copy_from_slice(&(status & !SERVER_SESSION_STATE_CHANGED).to_le_bytes());
    Some(out)
}

/// A schema-change entry, as a server puts in its login OK for a client that tracks schemas.
pub fn schema_block(db: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(db.len() + 2);
    write_lenenc(&mut data, db.len() as u64);
    data.extend_from_slice(db.as_bytes());
    let mut entry = vec![SESSION_TRACK_SCHEMA];
    write_lenenc(&mut entry, data.len() as u64);
    entry.extend_from_slice(&data);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `COMMIT` with `session_track_system_variables` including `last_gtid`, captured from
    /// MariaDB 10.11.
    const COMMIT_OK: &str = "0000000240000000130011096c6173745f6774696406302d312d3231";
    /// `SET NAMES latin1` with the default tracked variables plus `last_gtid`.
    const SET_NAMES_OK: &str = "00000002400000005f001d156368617261637465725f7365745f726573756c7473066c6174696e31001c146368617261637465725f7365745f636c69656e74066c6174696e310020186368617261637465725f7365745f636f6e6e656374696f6e066c6174696e31";
    /// `USE mysql`.
    const USE_OK: &str = "0000000240000000080106056d7973716c";

    #[test]
    fn parses_variables_and_schema() {
        let c = parse(&hex(COMMIT_OK)).unwrap();
        assert_eq!(c.var("last_gtid"), Some("0-1-21"));
        assert_eq!(c.schema, None);
        let c = parse(&hex(SET_NAMES_OK)).unwrap();
        assert_eq!(c.vars.len(), 3);
        assert_eq!(c.var("character_set_client"), Some("latin1"));
        assert_eq!(
            parse(&hex(USE_OK)).unwrap().schema.as_deref(),
            Some("mysql")
        );
        assert_eq!(parse(&hex("00000002000000")), None);
    }

    #[test]
    fn client_without_tracking_gets_a_plain_ok() {
        assert_eq!(
            client_ok(&hex(COMMIT_OK), false, &[], 0).unwrap(),
            hex("00000002000000")
        );
        assert_eq!(client_ok(&hex("00000002000000"), false, &[], 0), None);
    }

    #[test]
    fn hidden_variables_are_filtered() {
        // Only last_gtid: the whole block goes.
        assert_eq!(
            client_ok(&hex(COMMIT_OK), true, &["last_gtid"], 0).unwrap(),
            hex("00000002000000")
        );
        // Nothing hidden is in it: forwarded unchanged.
        assert_eq!(client_ok(&hex(SET_NAMES_OK), true, &["last_gtid"], 0), None);
        let out = client_ok(&hex(SET_NAMES_OK), true, &["CHARACTER_SET_RESULTS"], 0).unwrap();
        let c = parse(&out).unwrap();
        assert_eq!(c.vars.len(), 2);
        assert_eq!(c.var("character_set_results"), None);
        assert_eq!(c.var("character_set_connection"), Some("latin1"));
    }

    /// Captured from MariaDB 10.11 with `session_track_transaction_info = CHARACTERISTICS`:
    /// `SET TRANSACTION READ ONLY`; an autocommit `UPDATE` (with its info string) that used
    /// up a `SET TRANSACTION ISOLATION LEVEL READ COMMITTED`; a `COMMIT` (a state entry and
    /// an empty characteristics entry).
    const SET_TRANSACTION_OK: &str =
        "00000002400000001d041b1a534554205452414e53414354494f4e2052454144204f4e4c593b";
    const USED_UP_OK: &str = "0001002240000028526f7773206d6174636865643a203120204368616e6765643a203120205761726e696e67733a203003040100";
    const COMMIT_STATE_OK: &str = "00000002400000000e0509085f5f5f5f5f5f5f5f040100";

    #[test]
    fn reads_next_transaction_characteristics() {
        let set = parse(&hex(SET_TRANSACTION_OK)).unwrap();
        assert_eq!(set.next_transaction_set, Some(true));
        assert!(!set.is_empty());
        let used = parse(&hex(USED_UP_OK)).unwrap();
        assert_eq!(used.next_transaction_set, Some(false));
        let mut both = set;
        both.merge(used);
        assert_eq!(both.next_transaction_set, Some(false));
        assert_eq!(
            parse(&hex(COMMIT_STATE_OK)).unwrap().next_transaction_set,
            Some(false)
        );
        assert_eq!(parse(&hex(COMMIT_OK)).unwrap().next_transaction_set, None);
    }

    #[test]
    fn transaction_info_the_proxy_asked_for_is_hidden() {
        for ok in [SET_TRANSACTION_OK, USED_UP_OK, COMMIT_STATE_OK] {
            let out = client_ok(&hex(ok), true, &[], TRANSACTION_INFO_ENTRIES).unwrap();
            assert!(parse(&out).is_none(), "{ok}");
            assert_eq!(client_ok(&hex(ok), true, &[], 0), None, "{ok}");
        }
        // A client that tracks the state itself keeps those entries.
        let out = client_ok(
            &hex(COMMIT_STATE_OK),
            true,
            &[],
            TRANSACTION_INFO_ENTRIES & !TRANSACTION_STATE_ENTRIES,
        )
        .unwrap();
        assert_eq!(out, hex("00000002400000000b0509085f5f5f5f5f5f5f5f"));
        // The info string stays when the whole block goes.
        let out = client_ok(&hex(USED_UP_OK), true, &[], TRANSACTION_INFO_ENTRIES).unwrap();
        assert_eq!(
            out,
            hex(&USED_UP_OK[..USED_UP_OK.len() - 8].replace("0022400000", "0022000000"))
        );
    }

    #[test]
    fn info_survives_stripping() {
        // "Rows matched: 1  Changed: 1  Warnings: 0" style info, then a last_gtid block.
        let mut p = hex("00010002400000");
        write_lenenc(&mut p, 4);
        p.extend_from_slice(b"info");
        let gtid = &hex(COMMIT_OK)[8..];
        p.extend_from_slice(gtid);
        assert_eq!(parse(&p).unwrap().var("last_gtid"), Some("0-1-21"));
        let out = client_ok(&p, false, &[], 0).unwrap();
        assert_eq!(out, [&hex("00010002000000")[..], b"\x04info"].concat());
    }

    #[test]
    fn login_schema_block_matches_server() {
        let mut p = hex("0000000240000000");
        let block = schema_block("rwtest");
        write_lenenc(&mut p, block.len() as u64);
        p.extend_from_slice(&block);
        assert_eq!(p, hex("000000024000000009010706727774657374"));
    }

    #[test]
    fn eof_flag_cleared_for_plain_clients() {
        assert_eq!(
            client_eof(&hex("fe00000240"), false).unwrap(),
            hex("fe00000200")
        );
        assert_eq!(client_eof(&hex("fe00000240"), true), None);
        assert_eq!(client_eof(&hex("fe00000200"), false), None);
    }

    #[test]
    fn junk_never_panics() {
        for p in [
            "",
            "00",
            "0000000240",
            "000000024000000009",
            "0000000240000000ff",
            "00000002400000000501ff",
            "0000000240000000050005ff",
        ] {
            let _ = parse(&hex(p));
            let _ = client_ok(&hex(p), true, &["x"], TRANSACTION_INFO_ENTRIES);
            let _ = client_ok(&hex(p), false, &[], 0);
            let _ = client_eof(&hex(p), false);
        }
    }
}
