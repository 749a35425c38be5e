//! The batch blob: how a batch of server→client payloads travels to Redis
//! and back (scripts.rs says why one blob): one kind letter per payload
//! (`t`/`b`) and the payloads, each as a 4-byte big-endian length and its
//! bytes.

use bytes::Bytes;
use redis::Value;

use super::{
    redis::{bytes_of, num, unexpected, Entry},
    SessionStoreError,
};
use crate::Payload;

/// The entries a script answered, flat (first seq, kinds, blob) triples,
/// into the messages with `from <= seq <= upto`, in order; each entry's
/// first seq goes to `starts`. Each payload is a slice of its entry's blob
/// (no copy per message).
pub(super) fn parse_entries(
    what: &str,
    flat: Vec<Value>,
    from: u64,
    upto: u64,
    starts: &mut Vec<u64>,
) -> Result<Vec<Entry>, SessionStoreError> {
    let short = || SessionStoreError::Unexpected(format!("{what}: short entry"));
    let mut out = Vec::new();
    let mut it = flat.into_iter();
    while let Some(first) = it.next() {
        let (Some(kinds), Some(blob)) = (it.next(), it.next()) else {
            return Err(short());
        };
        let first = num(&first).ok_or_else(|| unexpected(what, &first))?;
        starts.push(first);
        let kinds = bytes_of(&kinds).ok_or_else(|| unexpected(what, &kinds))?;
        let blob = match blob {
            Value::BulkString(b) => Bytes::from(b),
            other => return Err(unexpected(what, &other)),
        };
        let mut pos = 0;
        for (seq, kind) in (first..).zip(kinds) {
            let len = blob
                .get(pos..pos + 4)
                .and_then(|l| <[u8; 4]>::try_from(l).ok())
                .map(|l| u32::from_be_bytes(l) as usize)
                .ok_or_else(short)?;
            let body = blob.get(pos + 4..pos + 4 + len).ok_or_else(short)?;
            pos += 4 + len;
            if seq < from || seq > upto {
                continue;
            }
            let body = blob.slice_ref(body);
            let payload = if *kind == b't' {
                match bytestring::ByteString::try_from(body.clone()) {
                    Ok(s) => Payload::Text(s),
                    Err(_) => Payload::Binary(body),
                }
            } else {
                Payload::Binary(body)
            };
            out.push((seq, payload));
        }
    }
    Ok(out)
}

fn kind_and_bytes(p: &Payload) -> (u8, &[u8]) {
    match p {
        Payload::Text(t) => (b't', t.as_bytes()),
        Payload::Binary(b) => (b'b', b),
    }
}

/// A batch's payloads as `commit`'s blob argument, written straight into
/// the command's buffer (no blob of its own, no copy per invocation
/// layer: a batch's bytes are copied into the command once, then once
/// more into the packed request).
#[derive(Clone)]
pub(super) struct BlobArg<I>(pub(super) I);

impl<'a, I: Iterator<Item = &'a Payload> + Clone> redis::ToRedisArgs for BlobArg<I> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        for p in self.0.clone() {
            let body = kind_and_bytes(p).1;
            // The lengths were checked by `kinds_of`; a Vec never fails.
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            let _ = w.write_all(&len.to_be_bytes());
            let _ = w.write_all(body);
        }
    }
}

/// One kind letter per payload, or an error for a payload whose length
/// does not fit the blob's 4-byte prefix.
pub(super) fn kinds_of<'a>(
    payloads: impl Iterator<Item = &'a Payload>,
) -> Result<Vec<u8>, SessionStoreError> {
    payloads
        .map(|p| {
            let (kind, body) = kind_and_bytes(p);
            u32::try_from(body.len()).map(|_| kind).map_err(|_| {
                SessionStoreError::Unexpected(format!("a payload of {} bytes", body.len()))
            })
        })
        .collect()
}

/// A batch as a stream entry holds it: one kind letter per payload, and
/// the payloads, each as a 4-byte big-endian length and its bytes (one
/// argument for the whole batch: see scripts.rs).
pub(super) fn encode<'a>(
    payloads: impl Iterator<Item = &'a Payload> + Clone,
) -> Result<(Vec<u8>, Vec<u8>), SessionStoreError> {
    let size = payloads.clone().map(|p| 4 + p.len()).sum();
    let mut kinds = Vec::new();
    let mut blob = Vec::with_capacity(size);
    for p in payloads {
        let (kind, body) = kind_and_bytes(p);
        let len = u32::try_from(body.len()).map_err(|_| {
            SessionStoreError::Unexpected(format!("a payload of {} bytes", body.len()))
        })?;
        kinds.push(kind);
        blob.extend_from_slice(&len.to_be_bytes());
        blob.extend_from_slice(body);
    }
    Ok((kinds, blob))
}
