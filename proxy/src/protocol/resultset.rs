//! Text-protocol result sets the proxy composes itself (the admin console's tables), in the
//! same EOF-terminated framing the proxy negotiates with every client.

use super::message::eof_payload;
use super::packet::{write_lenenc, PacketWriter};
use tokio::io::AsyncWrite;

/// `utf8mb3_general_ci`, what servers use for metadata-like string columns.
const UTF8_GENERAL_CI: u16 = 33;
const MYSQL_TYPE_VAR_STRING: u8 = 0xFD;

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    write_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn column_definition(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + name.len() * 2);
    lenenc_str(&mut p, b"def");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, b"");
    lenenc_str(&mut p, name.as_bytes());
    lenenc_str(&mut p, name.as_bytes());
    p.push(0x0C);
    p.extend_from_slice(&UTF8_GENERAL_CI.to_le_bytes());
    p.extend_from_slice(&1024u32.to_le_bytes());
    p.push(MYSQL_TYPE_VAR_STRING);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p
}

/// Writes a whole result set of string columns (`None` is SQL NULL) as the reply to a
/// command, starting at sequence id 1.
pub async fn write_text_resultset<W: AsyncWrite + Unpin>(
    w: &mut PacketWriter<W>,
    columns: &[String],
    rows: &[Vec<Option<String>>],
    status: u16,
) -> std::io::Result<()> {
    let mut count = Vec::new();
    write_lenenc(&mut count, columns.len() as u64);
    let mut seq = w.write_packet(1, &count).await?;
    for c in columns {
        seq = w.write_packet(seq, &column_definition(c)).await?;
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
