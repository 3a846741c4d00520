//! Text-protocol result sets the proxy composes itself (the admin console's tables), in the
//! same EOF-terminated framing the proxy negotiates with every client.

use super::message::eof_payload;
use super::packet::{write_lenenc, PacketWriter};
use tokio::io::AsyncWrite;

/// `utf8mb3_general_ci`, what servers use for metadata-like string columns.
const UTF8_GENERAL_CI: u16 = 33;
/// What servers declare numbers in: `binary`.
const BINARY: u16 = 63;
const MYSQL_TYPE_VAR_STRING: u8 = 0xFD;
const MYSQL_TYPE_LONGLONG: u8 = 0x08;
const UNSIGNED_FLAG: u16 = 0x0020;
const NUM_FLAG: u16 = 0x8000;

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    write_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A column of text, or of unsigned integers (`integer`), declared as a server would: the
/// values are text either way.
fn column_definition(name: &str, integer: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + name.len() * 2);
    lenenc_str(&mut p, b"def");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, name.as_bytes());
    lenenc_str(&mut p, name.as_bytes());
    p.push(0x0C);
    let (charset, length, kind, flags) = match integer {
        true => (BINARY, 20u32, MYSQL_TYPE_LONGLONG, UNSIGNED_FLAG | NUM_FLAG),
        false => (UTF8_GENERAL_CI, 1024, MYSQL_TYPE_VAR_STRING, 0),
    };
    p.extend_from_slice(&charset.to_le_bytes());
    p.extend_from_slice(&length.to_le_bytes());
    p.push(kind);
    p.extend_from_slice(&flags.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p
}

/// Writes a whole result set (`None` is SQL NULL) as the reply to a command, starting at
/// sequence id 1. `integer`: which columns are declared as unsigned integers, one flag per
/// column.
pub async fn write_text_resultset<W: AsyncWrite + Unpin>(
    w: &mut PacketWriter<W>,
    columns: &[String],
    integer: &[bool],
    rows: &[Vec<Option<String>>],
    status: u16,
) -> std::io::Result<()> {
    let mut count = Vec::new();
    write_lenenc(&mut count, columns.len() as u64);
    let mut seq = w.write_packet(1, &count).await?;
    for (i, c) in columns.iter().enumerate() {
        let integer = integer.get(i).copied().unwrap_or(false);
        seq = w.write_packet(seq, &column_definition(c, integer)).await?;
    }
    seq = w.write_packet(seq, &eof_payload(0, status)).await?;
    let mut row_buf = Vec::new();
    for row in rows {
        row_buf.clear();
        for v in row {
            match v {
                Some(s) => lenenc_str(&mut row_buf, s.as_bytes()),
                None => row_buf.push(0xFB),
            }
        }
        seq = w.write_packet(seq, &row_buf).await?;
    }
    w.write_packet(seq, &eof_payload(0, status)).await?;
    w.flush().await
}
