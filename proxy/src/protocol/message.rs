//! The few server messages the proxy must read or write itself: OK, ERR, EOF, and the
//! status flags inside them. Everything else passes through as raw packets.

use super::packet::{read_lenenc, write_lenenc};
use mysql_common::packets::{ErrPacket, ServerError, SqlState};
use mysql_common::proto::MySerialize;

pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
/// In a transaction started `READ ONLY` (with `SERVER_STATUS_IN_TRANS`).
pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 0x2000;
pub const SERVER_STATUS_NO_BACKSLASH_ESCAPES: u16 = 0x0200;
/// MariaDB's: `sql_mode` has `ANSI_QUOTES`.
pub const SERVER_STATUS_ANSI_QUOTES: u16 = 0x8000;
/// The flags that report the session's `sql_mode`. Drivers that escape strings themselves
/// (Connector/C's `mysql_real_escape_string`, go-sql-driver's interpolation, Connector/J's
/// client-side statements) choose how by them: a reply without `NO_BACKSLASH_ESCAPES` from a
/// session that has it makes them escape quotes with backslashes, which the server then takes
/// literally, and a crafted string ends the literal early.
pub const SQL_MODE_FLAGS: u16 = SERVER_STATUS_NO_BACKSLASH_ESCAPES | SERVER_STATUS_ANSI_QUOTES;
/// The flags that describe the session, as opposed to one reply (more results, cursor,
/// index use, slow query, ...): what the proxy's own replies carry over.
pub const SESSION_FLAGS: u16 = SERVER_STATUS_IN_TRANS
    | SERVER_STATUS_AUTOCOMMIT
    | SERVER_STATUS_IN_TRANS_READONLY
    | SQL_MODE_FLAGS;

/// The parts of an OK packet (or of an EOF packet, which has no counters) the proxy tracks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// Parses an OK packet (header 0x00, or 0xFE when it ends a result set).
pub fn parse_ok(payload: &[u8]) -> Option<Completion> {
    let mut b = payload.get(1..)?;
    let affected_rows = read_lenenc(&mut b)?;
    let last_insert_id = read_lenenc(&mut b)?;
    if b.len() < 4 {
        return None;
    }
    Some(Completion {
        affected_rows,
        last_insert_id,
        status: u16::from_le_bytes([b[0], b[1]]),
        warnings: u16::from_le_bytes([b[2], b[3]]),
    })
}

/// Parses a pre-4.1-style EOF packet: 0xFE, warnings, status.
pub fn parse_eof(payload: &[u8]) -> Option<Completion> {
    if payload.len() < 5 {
        return None;
    }
    Some(Completion {
        warnings: u16::from_le_bytes([payload[1], payload[2]]),
        status: u16::from_le_bytes([payload[3], payload[4]]),
        ..Completion::default()
    })
}

/// An EOF packet: a payload starting with 0xFE that is too short to be a row.
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 9
}

pub fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFF)
}

pub fn ok_payload(c: &Completion) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(0x00);
    write_lenenc(&mut out, c.affected_rows);
    write_lenenc(&mut out, c.last_insert_id);
    out.extend_from_slice(&c.status.to_le_bytes());
    out.extend_from_slice(&c.warnings.to_le_bytes());
    out
}

pub fn eof_payload(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// An error as a server would word it: code, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: u16,
    pub state: [u8; 5],
    pub message: String,
}

impl SqlError {
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> Self {
        let mut s = [b'H', b'Y', b'0', b'0', b'0'];
        if state.len() == 5 {
            s.copy_from_slice(state.as_bytes());
        }
        Self {
            code,
            state: s,
            message: message.into(),
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.message.len());
        ErrPacket::Error(ServerError::new(
            self.code,
            Some(SqlState::new(self.state)),
            self.message.as_bytes(),
        ))
        .serialize(&mut out);
        out
    }

    /// Reads a server's ERR packet so it can be logged or re-raised verbatim.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        if !is_err(payload) || payload.len() < 3 {
            return None;
        }
        let code = u16::from_le_bytes([payload[1], payload[2]]);
        let rest = &payload[3..];
        let (state, msg) = match rest {
            [b'#', s @ ..] if s.len() >= 5 => {
                let mut st = [0u8; 5];
                st.copy_from_slice(&s[..5]);
                (st, &s[5..])
            }
            _ => (*b"HY000", rest),
        };
        Some(Self {
            code,
            state,
            message: String::from_utf8_lossy(msg).into_owned(),
        })
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.state),
            self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// Error codes the proxy raises itself, with the SQLSTATE the server would use.
pub mod codes {
    pub const ACCESS_DENIED: (u16, &str) = (1045, "28000");
    /// ER_BAD_DB_ERROR, which the proxy also looks for in a replica's answer (see
    /// `Session::checkout`).
    pub const BAD_DB: (u16, &str) = (1049, "42000");
    pub const NOT_SUPPORTED_AUTH_MODE: (u16, &str) = (1251, "08004");
    pub const HOST_NOT_PRIVILEGED: (u16, &str) = (1130, "HY000");
    pub const UNKNOWN_COM: (u16, &str) = (1047, "08S01");
    pub const UNKNOWN_SYSTEM_VARIABLE: (u16, &str) = (1193, "HY000");
    pub const UNKNOWN_STMT_HANDLER: (u16, &str) = (1243, "HY000");
    pub const STMT_HAS_NO_OPEN_CURSOR: (u16, &str) = (1421, "HY000");
    pub const HANDSHAKE_ERROR: (u16, &str) = (1043, "08S01");
    pub const NET_PACKETS_OUT_OF_ORDER: (u16, &str) = (1156, "08S01");
    pub const NET_PACKET_TOO_LARGE: (u16, &str) = (1153, "08S01");
    pub const MAX_PREPARED_STMT_COUNT_REACHED: (u16, &str) = (1461, "42000");
    /// A backend cannot be reached (or its pool has no room). Not the client library's 2003
    /// or 2013, which a client reads as its own: from a server, the MariaDB library shows
    /// any code of 2000-2999 as "Received malformed packet" and drops the message. This is
    /// the server's ER_CONNECT_TO_FOREIGN_DATA_SOURCE, its error for a server it fails to
    /// reach on a client's behalf (FEDERATED, CONNECT).
    pub const BACKEND_UNREACHABLE: (u16, &str) = (1429, "HY000");
    /// The backend connection broke during a statement: ER_NET_READ_ERROR, whose SQLSTATE
    /// (communication link failure) drivers know.
    pub const BACKEND_LOST: (u16, &str) = (1158, "08S01");
    pub const TOO_MANY_CONNECTIONS: (u16, &str) = (1040, "08004");
    pub const NOT_SUPPORTED: (u16, &str) = (1235, "42000");
    pub const UNSUPPORTED_PS: (u16, &str) = (1295, "HY000");
    pub const WRONG_ARGUMENTS: (u16, &str) = (1210, "HY000");
    pub const INVALID_CHARACTER_STRING: (u16, &str) = (1300, "HY000");
    pub const MALFORMED_PACKET: (u16, &str) = (1835, "HY000");
    pub const CONNECTION_KILLED: (u16, &str) = (1927, "70100");
    pub const UNKNOWN_THREAD: (u16, &str) = (1094, "HY000");
    pub const KILL_DENIED: (u16, &str) = (1095, "HY000");
    pub const QUERY_INTERRUPTED: (u16, &str) = (1317, "70100");
    /// ER_OPTION_PREVENTS_STATEMENT: what a server says to a write under `read_only=ON`.
    pub const OPTION_PREVENTS_STATEMENT: (u16, &str) = (1290, "HY000");
    /// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: a write in `START TRANSACTION READ ONLY`.
    pub const READ_ONLY_TRANSACTION: (u16, &str) = (1792, "25006");
}

pub fn err(code: (u16, &str), message: impl Into<String>) -> SqlError {
    SqlError::new(code.0, code.1, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_roundtrip() {
        let c = Completion {
            affected_rows: 300,
            last_insert_id: 70000,
            status: SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS,
            warnings: 2,
        };
        assert_eq!(parse_ok(&ok_payload(&c)), Some(c));
        assert_eq!(parse_ok(&[0]), None);
    }

    #[test]
    fn err_roundtrip() {
        let e = err(codes::ACCESS_DENIED, "Access denied for user 'x'@'h'");
        let p = e.payload();
        assert_eq!(&p[..3], &[0xFF, 0x15, 0x04]);
        assert_eq!(&p[3..9], b"#28000");
        assert_eq!(SqlError::parse(&p), Some(e));
        assert_eq!(SqlError::parse(&[0xFF]), None);
    }

    #[test]
    fn eof_detection() {
        assert!(is_eof(&eof_payload(0, 2)));
        assert_eq!(parse_eof(&eof_payload(3, 0x22)).unwrap().status, 0x22);
        assert!(!is_eof(&[0xFE, 1, 2, 3, 4, 5, 6, 7, 8]));
    }
}
