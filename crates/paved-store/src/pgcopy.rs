//! The audit chain read from PostgreSQL in `COPY … TO STDOUT (FORMAT binary)`.
//!
//! Verifying a million events through the `Any` driver decoded a million
//! 13-column rows one value at a time; one binary `COPY` streams the whole
//! chain in seq order and is cut into pages here, while the pages before are
//! checked. The format (PostgreSQL manual, "COPY", section "Binary Format"):
//!
//! ```text
//! header   "PGCOPY\n\xff\r\n\0"  i32 flags  i32 extension length  extension bytes
//! tuple    i16 field count (-1: end of data)
//!          per field: i32 length (-1: NULL), then that many bytes
//! ```
//!
//! all integers big-endian; `seq` is a `BIGINT` (8 bytes), the other columns
//! are `TEXT` (their UTF-8 bytes).

use crate::audit::PackedEvents;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const COLUMNS: i16 = 13;

/// Cuts a binary COPY stream, arriving in chunks of any size, into events.
#[derive(Default)]
pub(crate) struct CopyReader {
    buf: Vec<u8>,
    pos: usize,
    header_read: bool,
    ended: bool,
}

impl CopyReader {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        // Drop what was consumed before growing, so the buffer stays one page or so.
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Appends the next complete event to `page`; `Ok(false)` when more
    /// bytes are needed or the data ended.
    pub(crate) fn next_into(&mut self, page: &mut PackedEvents) -> Result<bool, String> {
        if self.ended {
            return Ok(false);
        }
        if !self.header_read {
            let Some(header) = self.buf.get(self.pos..self.pos + 19) else { return Ok(false) };
            if &header[..11] != SIGNATURE {
                return Err("not a binary COPY stream".into());
            }
            let extension = i32::from_be_bytes([header[15], header[16], header[17], header[18]]);
            let extension = usize::try_from(extension).map_err(|_| "bad COPY header extension".to_string())?;
            if self.buf.len() < self.pos + 19 + extension {
                return Ok(false);
            }
            self.pos += 19 + extension;
            self.header_read = true;
        }
        let mut at = self.pos;
        let Some(count) = read_i16(&self.buf, &mut at) else { return Ok(false) };
        if count == -1 {
            self.ended = true;
            self.pos = at;
            return Ok(false);
        }
        if count != COLUMNS {
            return Err(format!("a COPY row of {count} columns, expected {COLUMNS}"));
        }
        let mut fields: [Option<&[u8]>; COLUMNS as usize] = [None; COLUMNS as usize];
        for field in fields.iter_mut() {
            let Some(len) = read_i32(&self.buf, &mut at) else { return Ok(false) };
            if len < 0 {
                continue;
            }
            let Some(bytes) = self.buf.get(at..at + len as usize) else { return Ok(false) };
            at += len as usize;
            *field = Some(bytes);
        }
        let seq = match fields[0] {
            Some(b) if b.len() == 8 => i64::from_be_bytes(b.try_into().map_err(|_| "bad seq".to_string())?),
            _ => return Err("seq is not a BIGINT".into()),
        };
        let mut texts: [Option<&str>; 12] = [None; 12];
        for (i, (text, field)) in texts.iter_mut().zip(&fields[1..]).enumerate() {
            *text = field
                .map(|b| std::str::from_utf8(b).map_err(|e| format!("event {seq}: column {} is not UTF-8: {e}", i + 1)))
                .transpose()?;
        }
        page.push(seq, texts)?;
        self.pos = at;
        Ok(true)
    }
}

fn read_i16(buf: &[u8], at: &mut usize) -> Option<i16> {
    let b = buf.get(*at..*at + 2)?;
    *at += 2;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

fn read_i32(buf: &[u8], at: &mut usize) -> Option<i32> {
    let b = buf.get(*at..*at + 4)?;
    *at += 4;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream as PostgreSQL writes it, for `events`.
    fn encode(events: &[crate::audit::StoredEvent]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0_i32.to_be_bytes());
        out.extend_from_slice(&4_i32.to_be_bytes());
        out.extend_from_slice(b"ext!");
        for e in events {
            out.extend_from_slice(&COLUMNS.to_be_bytes());
            out.extend_from_slice(&8_i32.to_be_bytes());
            out.extend_from_slice(&e.seq.to_be_bytes());
            let texts = [
                Some(&e.at),
                Some(&e.actor),
                Some(&e.action),
                Some(&e.target),
                Some(&e.outcome),
                Some(&e.request_id),
                Some(&e.origin),
                e.before_digest.as_ref(),
                e.after_digest.as_ref(),
                Some(&e.details),
                Some(&e.prev_hash),
                Some(&e.hash),
            ];
            for t in texts {
                match t {
                    Some(t) => {
                        out.extend_from_slice(&(t.len() as i32).to_be_bytes());
                        out.extend_from_slice(t.as_bytes());
                    }
                    None => out.extend_from_slice(&(-1_i32).to_be_bytes()),
                }
            }
        }
        out.extend_from_slice(&(-1_i16).to_be_bytes());
        out
    }

    #[test]
    fn a_stream_cut_anywhere_reads_back_as_the_events_it_holds() {
        let mut events = crate::audit::sample_chain(1, 40, crate::audit::GENESIS.to_string());
        events[3].before_digest = None;
        events[5].details = "ünïcode \"quoted\"\n".into();
        let stream = encode(&events);
        for chunk in [1, 7, 64, stream.len()] {
            let mut reader = CopyReader::default();
            let mut read = PackedEvents::default();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                while reader.next_into(&mut read).unwrap() {}
            }
            assert!(reader.ended(), "chunk {chunk}");
            assert_eq!(read.to_events(), events, "chunk {chunk}");
        }
    }

    #[test]
    fn a_stream_of_another_shape_is_an_error_not_a_panic() {
        let mut reader = CopyReader::default();
        reader.push(b"not a copy stream at all");
        assert!(reader.next_into(&mut PackedEvents::default()).is_err());
        let mut reader = CopyReader::default();
        let mut stream = encode(&crate::audit::sample_chain(1, 2, crate::audit::GENESIS.to_string()));
        stream[23..25].copy_from_slice(&3_i16.to_be_bytes());
        reader.push(&stream);
        assert!(reader.next_into(&mut PackedEvents::default()).unwrap_err().contains("3 columns"));
    }
}
