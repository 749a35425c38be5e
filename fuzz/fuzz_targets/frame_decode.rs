//! The protocol frame decoder (docs/PROTOCOL.md §3) on arbitrary bytes: it
//! never panics, and whatever decodes re-encodes to bytes that decode to
//! the same frame.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use resilient_ws::protocol::Frame;

fuzz_target!(|data: &[u8]| {
    match Frame::decode(Bytes::copy_from_slice(data)) {
        Ok(frame) => {
            let bytes = frame.to_bytes();
            let again = Frame::decode(bytes.clone()).expect("a re-encoded frame decodes");
            assert_eq!(again, frame, "round trip");
            // Encoding is canonical: the same frame, the same bytes.
            assert_eq!(again.to_bytes(), bytes);
            let _ = format!("{frame:?}");
        }
        Err(e) => {
            let _ = (e.close_code(), e.to_string());
        }
    }
});
