//! The bytes of the commit journal: checkpoint headers and message records.
//!
//! Both carry a checksum (the first 8 bytes of SHA-256 over everything
//! after it; `sha2` is already compiled in for OAuth2, and at 1.5 KB per
//! record it costs microseconds) so that a torn or half-overwritten write
//! is recognised, and an epoch so that a record left over from before a
//! checkpoint is never taken for a live one. Encoding and decoding only:
//! no I/O here.

use sha2::{Digest, Sha256};

use super::super::id::QueueId;

/// Magic of a checkpoint header.
const HEADER_MAGIC: &[u8; 4] = b"PRJH";
/// Magic of a message record.
const RECORD_MAGIC: &[u8; 4] = b"PRJR";
/// Bytes of a header: magic, checksum, generation, epoch, covered.
pub(super) const HEADER_LEN: usize = 4 + 8 + 8 + 8 + 4;
/// Bytes of a record before its envelope: magic, checksum, epoch,
/// sequence, id (26 characters), envelope length, body length.
pub(super) const RECORD_HEAD: usize = 4 + 8 + 8 + 4 + ID_LEN + 4 + 4;
/// Length of a queue id's text.
const ID_LEN: usize = 26;

/// One message as the journal keeps it (its epoch and place in the
/// epoch are checked by [`decode_record`], not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The message.
    pub(crate) id: QueueId,
    /// The envelope JSON, exactly as staged.
    pub(crate) envelope: Vec<u8>,
    /// The whole body.
    pub(crate) body: Vec<u8>,
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(bytes);
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// What a header says: the records of `epoch` numbered `covered` and
/// up are live (not yet made durable in queue/ by a checkpoint); every
/// other record is not. `generation` orders the two header slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) generation: u64,
    pub(crate) epoch: u64,
    pub(crate) covered: u32,
}

impl Header {
    /// Whether this header leaves live anything `other` covers.
    pub(crate) fn behind(&self, epoch: u64, covered: u32) -> bool {
        (self.epoch, self.covered) < (epoch, covered)
    }
}

pub(super) fn encode_header(h: &Header) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[..4].copy_from_slice(HEADER_MAGIC);
    out[12..20].copy_from_slice(&h.generation.to_le_bytes());
    out[20..28].copy_from_slice(&h.epoch.to_le_bytes());
    out[28..32].copy_from_slice(&h.covered.to_le_bytes());
    let sum = checksum(&out[12..]);
    out[4..12].copy_from_slice(&sum);
    out
}

/// A sound header, `None` if it is torn or was never written.
pub(super) fn decode_header(bytes: &[u8]) -> Option<Header> {
    let bytes = bytes.get(..HEADER_LEN)?;
    if &bytes[..4] != HEADER_MAGIC || bytes[4..12] != checksum(&bytes[12..]) {
        return None;
    }
    Some(Header {
        generation: u64::from_le_bytes(bytes[12..20].try_into().ok()?),
        epoch: u64::from_le_bytes(bytes[20..28].try_into().ok()?),
        covered: u32::from_le_bytes(bytes[28..32].try_into().ok()?),
    })
}

/// Appends the record of one message to `out`.
pub(super) fn encode_record(
    out: &mut Vec<u8>,
    epoch: u64,
    seq: u32,
    id: &QueueId,
    envelope: &[u8],
    body: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let id = id.to_string();
    debug_assert_eq!(id.len(), ID_LEN);
    out.extend_from_slice(id.as_bytes());
    // Bodies and envelopes in the journal are bounded far below 4 GiB.
    out.extend_from_slice(
        &u32::try_from(envelope.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(envelope);
    out.extend_from_slice(body);
    let sum = checksum(&out[start + 12..]);
    out[start + 4..start + 12].copy_from_slice(&sum);
}

/// Bytes the record of a message with these parts takes.
pub(super) fn record_len(envelope: usize, body: usize) -> usize {
    RECORD_HEAD + envelope + body
}

/// The record at the start of `bytes` and its length, if it is sound and
/// is number `seq` of `epoch`; `None` ends the scan (zeros, a torn write, a
/// stale record of an earlier epoch, or the end of the segment).
pub(super) fn decode_record(bytes: &[u8], epoch: u64, seq: u32) -> Option<(Record, usize)> {
    let head = bytes.get(..RECORD_HEAD)?;
    if &head[..4] != RECORD_MAGIC {
        return None;
    }
    let u32_at = |at: usize| head[at..at + 4].try_into().ok().map(u32::from_le_bytes);
    let epoch_found = u64::from_le_bytes(head[12..20].try_into().ok()?);
    let seq_found = u32_at(20)?;
    if epoch_found != epoch || seq_found != seq {
        return None;
    }
    let env_len = usize::try_from(u32_at(24 + ID_LEN)?).ok()?;
    let body_len = usize::try_from(u32_at(28 + ID_LEN)?).ok()?;
    let len = RECORD_HEAD.checked_add(env_len)?.checked_add(body_len)?;
    let whole = bytes.get(..len)?;
    if whole[4..12] != checksum(&whole[12..]) {
        return None;
    }
    let id = std::str::from_utf8(&head[24..24 + ID_LEN])
        .ok()?
        .parse()
        .ok()?;
    let envelope = whole[RECORD_HEAD..RECORD_HEAD + env_len].to_vec();
    let body = whole[RECORD_HEAD + env_len..].to_vec();
    let record = Record { id, envelope, body };
    Some((record, len))
}
