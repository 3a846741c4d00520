//! Client character sets whose two-byte characters may end in an ASCII byte.
//!
//! In big5, gbk, sjis and cp932 the second byte of a character can be an ASCII byte: `\`
//! (gbk `乗` is `81 5C`), `` ` ``, `|`, `@` or a letter, though never a quote. A server reads
//! such a pair as one
//! character; a lexer that reads bytes sees an escape that swallows the closing quote, a
//! backtick that opens a quoted name, and from there reads the rest of the statement wrong:
//! a write hidden after a "string" routed to a replica, a `CONNECTION_ID()` inside a string
//! rewritten. [`Multibyte::lexable`] gives the lexers a copy in which every such character is
//! replaced by bytes they read as part of a name (0x80), at the same offsets, so a
//! position found in the copy is a position in the original. The EUC sets (ujis, eucjpms,
//! euckr, gb2312) and UTF-8 have no ASCII second bytes and need none of this.

use std::borrow::Cow;

/// A character set of that kind, by how it tells a two-byte character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multibyte {
    Big5,
    Gbk,
    /// sjis and cp932 share their byte ranges.
    Sjis,
}

/// What stands for each byte of a masked character: an identifier byte to every lexer here,
/// never a quote, an escape, an operator or part of a keyword.
const MASK: u8 = 0x80;

impl Multibyte {
    /// By the name `character_set_client` reports (or `SET NAMES` takes).
    pub fn of_charset(name: &str) -> Option<Multibyte> {
        match name.to_ascii_lowercase().as_str() {
            "big5" => Some(Multibyte::Big5),
            "gbk" => Some(Multibyte::Gbk),
            "sjis" | "cp932" => Some(Multibyte::Sjis),
            _ => None,
        }
    }

    /// By the collation id of a handshake or `COM_CHANGE_USER` (MariaDB's ids, `_nopad`
    /// variants included).
    pub fn of_collation(id: u16) -> Option<Multibyte> {
        match id {
            1 | 84 | 1025 | 1108 => Some(Multibyte::Big5),
            28 | 87 | 1052 | 1111 => Some(Multibyte::Gbk),
            13 | 88 | 1037 | 1112 | 95 | 96 | 1119 | 1120 => Some(Multibyte::Sjis),
            _ => None,
        }
    }

    fn lead(self, b: u8) -> bool {
        match self {
            Multibyte::Big5 => (0xa1..=0xf9).contains(&b),
            Multibyte::Gbk => (0x81..=0xfe).contains(&b),
            Multibyte::Sjis => matches!(b, 0x81..=0x9f | 0xe0..=0xfc),
        }
    }

    fn trail(self, b: u8) -> bool {
        match self {
            Multibyte::Big5 => matches!(b, 0x40..=0x7e | 0xa1..=0xfe),
            Multibyte::Gbk => matches!(b, 0x40..=0x7e | 0x80..=0xfe),
            Multibyte::Sjis => matches!(b, 0x40..=0x7e | 0x80..=0xfc),
        }
    }

    /// `sql` as the lexers may read it: borrowed when it has no byte above ASCII (every
    /// statement of most sessions), else a copy with each character of two bytes (a lead
    /// byte and a valid second byte, as a server tells them) and each other non-ASCII byte
    /// replaced by [`MASK`].
    pub fn lexable(self, sql: &[u8]) -> Cow<'_, [u8]> {
        let Some(first) = sql.iter().position(|&b| b >= 0x80) else {
            return Cow::Borrowed(sql);
        };
        let mut out = sql.to_vec();
        let mut i = first;
        while i < out.len() {
            let b = out[i];
            if b < 0x80 {
                i += 1;
                continue;
            }
            let pair = self.lead(b) && out.get(i + 1).is_some_and(|&t| self.trail(t));
            let n = if pair { 2 } else { 1 };
            out[i..i + n].fill(MASK);
            i += n;
        }
        Cow::Owned(out)
    }
}

/// `sql` for the lexers of a session whose client character set is `cs` (see the module).
pub fn lexable(cs: Option<Multibyte>, sql: &[u8]) -> Cow<'_, [u8]> {
    match cs {
        Some(cs) => cs.lexable(sql),
        None => Cow::Borrowed(sql),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::classify::{self, StmtKind};

    /// gbk `乗` is 81 5C: read byte by byte, the string never closes and the `UPDATE` after
    /// it is inside it.
    #[test]
    fn a_backslash_second_byte_does_not_escape_the_quote() {
        let sql = b"SELECT '\x81\x5c'; UPDATE t SET s = 'x' WHERE id = 99";
        let gbk = lexable(Some(Multibyte::Gbk), sql);
        assert_eq!(gbk.len(), sql.len());
        assert_eq!(&gbk[8..10], &[MASK, MASK]);
        assert_eq!(&gbk[10..], &sql[10..]);
        let c = classify::classify(&gbk);
        assert!(c.flags.contains(classify::Flags::MULTI_STATEMENT));
        assert_ne!(
            classify::classify(&gbk[12..]).kind,
            StmtKind::Read,
            "the UPDATE is a statement of its own"
        );
    }

    #[test]
    fn only_valid_pairs_are_one_character() {
        // 0x81 then a byte no gbk character ends in: two characters, the quote stays.
        assert_eq!(
            &lexable(Some(Multibyte::Gbk), b"'\x81''")[..],
            &[b'\'', MASK, b'\'', b'\''][..]
        );
        // big5 leads start at A1: 81 5C is two bytes, the backslash an escape as on a server.
        assert_eq!(
            &lexable(Some(Multibyte::Big5), b"\x81\x5c")[..],
            &[MASK, b'\\'][..]
        );
        assert_eq!(
            &lexable(Some(Multibyte::Big5), b"\xa4\x5c")[..],
            &[MASK, MASK][..]
        );
        // sjis half-width katakana (A1-DF) are single bytes; E0 5C is a pair.
        assert_eq!(
            &lexable(Some(Multibyte::Sjis), b"\xb1\x5c\xe0\x5c")[..],
            &[MASK, b'\\', MASK, MASK][..]
        );
        // A lead byte at the very end.
        assert_eq!(&lexable(Some(Multibyte::Gbk), b"a\x81")[..], b"a\x80");
    }

    #[test]
    fn ascii_and_other_charsets_are_not_copied() {
        assert!(matches!(
            lexable(Some(Multibyte::Gbk), b"SELECT 1"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(lexable(None, b"'\x81\x5c'"), Cow::Borrowed(_)));
        assert_eq!(Multibyte::of_charset("CP932"), Some(Multibyte::Sjis));
        assert_eq!(Multibyte::of_charset("utf8mb4"), None);
        assert_eq!(Multibyte::of_collation(28), Some(Multibyte::Gbk));
        assert_eq!(Multibyte::of_collation(45), None);
    }
}
