//! Unit tests of `frame.rs`.
use super::*;

#[test]
fn the_largest_hello_is_max_hello_len() {
    let hello = Frame::Hello {
        connection_id: "c".repeat(MAX_HELLO_FIELD_LEN),
        reconnect_token: "t".repeat(MAX_HELLO_FIELD_LEN),
        last_received: u64::MAX,
        first_seq: u64::MAX,
    };
    assert_eq!(hello.to_bytes().len(), MAX_HELLO_LEN);
}
use proptest::prelude::*;

fn varint(v: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_varint(&mut out, v);
    out.to_vec()
}

fn decode_varint(bytes: &[u8]) -> Result<u64, FrameError> {
    let mut pos = 0;
    let v = read_varint(bytes, &mut pos, "v")?;
    assert_eq!(pos, bytes.len(), "varint consumed every byte");
    Ok(v)
}

fn roundtrip(frame: Frame) {
    let bytes = frame.to_bytes();
    assert_eq!(
        Frame::decode(bytes.clone()).as_ref(),
        Ok(&frame),
        "{bytes:?}"
    );
    // encode appends
    let mut out = BytesMut::from(&b"xy"[..]);
    frame.encode(&mut out);
    assert_eq!(&out[..2], b"xy");
    assert_eq!(&out[2..], &bytes[..]);
    if let Frame::Data { seq, payload } = &frame {
        assert_eq!(encode_data(*seq, payload), bytes);
    }
}

fn token() -> String {
    "Qm9vZ2llV29vZ2llQm9vZ2llV29vZ2llQm9vZ2llV29".to_string()
}

#[test]
fn round_trip_every_frame_type() {
    for (a, b) in [
        (0, 0),
        (0, 1),
        (1, u64::MAX),
        (u64::MAX, u64::MAX),
        (300, 127),
    ] {
        roundtrip(Frame::hello("0123456789abcdef0123456789abcdef", token(), a, b).unwrap());
    }
    roundtrip(Frame::hello("", "", 0, 1).unwrap());
    roundtrip(Frame::hello("x".repeat(255), "y".repeat(255), 5, 6).unwrap());
    for resumed in [false, true] {
        for last in [0, 1, 128, u64::MAX] {
            roundtrip(Frame::Welcome {
                resumed,
                last_received: last,
            });
        }
    }
    for seq in [0, 1, 127, 128, 16383, 16384, u64::MAX] {
        roundtrip(Frame::Data {
            seq,
            payload: Payload::Text("".into()),
        });
        roundtrip(Frame::Data {
            seq,
            payload: Payload::Text("héllo ✓".into()),
        });
        roundtrip(Frame::Data {
            seq,
            payload: Payload::Binary(Bytes::new()),
        });
        roundtrip(Frame::Data {
            seq,
            payload: Payload::Binary(Bytes::from_static(&[0, 0xff, 0x80, 1])),
        });
        roundtrip(Frame::Ack { seq });
        roundtrip(Frame::Ping { nonce: seq });
        roundtrip(Frame::Pong { nonce: seq });
    }
}

#[test]
fn wire_format_is_as_specified() {
    assert_eq!(&Frame::Ack { seq: 300 }.to_bytes()[..], &[0x05, 0xAC, 0x02]);
    assert_eq!(
        &Frame::Ping { nonce: 300 }.to_bytes()[..],
        &[0x06, 0xAC, 0x02]
    );
    assert_eq!(&Frame::Pong { nonce: 1 }.to_bytes()[..], &[0x07, 0x01]);
    assert_eq!(
        &Frame::Welcome {
            resumed: true,
            last_received: 3
        }
        .to_bytes()[..],
        &[0x02, 0x01, 0x03]
    );
    assert_eq!(
        &encode_data(1, &Payload::Text("a".into()))[..],
        &[0x03, 0x01, b'a']
    );
    assert_eq!(
        &encode_data(2, &Payload::Binary(Bytes::from_static(b"b")))[..],
        &[0x04, 0x02, b'b']
    );
    assert_eq!(
        &Frame::hello("ab", "t", 1, 2).unwrap().to_bytes()[..],
        &[0x01, 2, b'a', b'b', 1, b't', 1, 2]
    );
}

#[test]
fn varint_edge_cases() {
    assert_eq!(varint(0), [0x00]);
    assert_eq!(varint(127), [0x7f]);
    assert_eq!(varint(128), [0x80, 0x01]);
    assert_eq!(varint(300), [0xAC, 0x02]);
    assert_eq!(
        varint(u64::MAX),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
    );
    for v in [
        0,
        1,
        127,
        128,
        300,
        16383,
        16384,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let enc = varint(v);
        assert_eq!(enc.len(), varint_len(v), "len of {v}");
        assert_eq!(decode_varint(&enc), Ok(v));
    }
    assert_eq!(decode_varint(&[0xAC, 0x02]), Ok(300));
    // Redundant zero groups within 10 bytes are accepted.
    assert_eq!(decode_varint(&[0x80, 0x00]), Ok(0));
    // 11 bytes: too long, even when the value would fit.
    let mut eleven = vec![0x80; 10];
    eleven.push(0x00);
    assert_eq!(decode_varint(&eleven), Err(FrameError::VarintTooLong));
    assert_eq!(decode_varint(&[0xff; 11]), Err(FrameError::VarintTooLong));
    // 10 bytes whose value is over u64::MAX.
    let mut over = vec![0xff; 9];
    over.push(0x02);
    assert_eq!(decode_varint(&over), Err(FrameError::VarintTooLong));
    // Truncated.
    assert_eq!(decode_varint(&[]), Err(FrameError::Truncated("v")));
    assert_eq!(decode_varint(&[0x80]), Err(FrameError::Truncated("v")));
    assert_eq!(decode_varint(&[0xff; 9]), Err(FrameError::Truncated("v")));
}

fn dec(bytes: &[u8]) -> Result<Frame, FrameError> {
    Frame::decode(Bytes::copy_from_slice(bytes))
}

#[test]
fn malformed_frames() {
    use FrameError::*;
    assert_eq!(dec(&[]), Err(Empty));
    for ty in [0x00, 0x08, 0x7f, 0xff] {
        assert_eq!(dec(&[ty, 1, 2]), Err(UnknownType(ty)));
    }
    // HELLO, cut at every field.
    assert_eq!(dec(&[0x01]), Err(Truncated("id_len")));
    assert_eq!(dec(&[0x01, 2, b'a']), Err(Truncated("connection_id")));
    assert_eq!(dec(&[0x01, 1, b'a']), Err(Truncated("tok_len")));
    assert_eq!(
        dec(&[0x01, 1, b'a', 3, b't']),
        Err(Truncated("reconnect_token"))
    );
    assert_eq!(
        dec(&[0x01, 1, b'a', 1, b't']),
        Err(Truncated("last_received"))
    );
    assert_eq!(
        dec(&[0x01, 1, b'a', 1, b't', 0x80]),
        Err(Truncated("last_received"))
    );
    assert_eq!(
        dec(&[0x01, 1, b'a', 1, b't', 0]),
        Err(Truncated("first_seq"))
    );
    assert_eq!(
        dec(&[0x01, 1, b'a', 1, b't', 0, 0x81]),
        Err(Truncated("first_seq"))
    );
    assert_eq!(dec(&[0x01, 1, 0xff, 1, b't', 0, 1]), Err(InvalidUtf8));
    assert_eq!(dec(&[0x01, 1, b'a', 1, 0xc3, 0, 1]), Err(InvalidUtf8));
    let mut long = vec![0x01, 0, 0];
    long.extend_from_slice(&[0xff; 11]);
    assert_eq!(dec(&long), Err(VarintTooLong));
    // WELCOME.
    assert_eq!(dec(&[0x02]), Err(Truncated("flags")));
    assert_eq!(dec(&[0x02, 1]), Err(Truncated("last_received")));
    assert_eq!(dec(&[0x02, 1, 0xff]), Err(Truncated("last_received")));
    // DATA.
    for ty in [0x03, 0x04] {
        assert_eq!(dec(&[ty]), Err(Truncated("seq")));
        assert_eq!(dec(&[ty, 0x80]), Err(Truncated("seq")));
        let mut f = vec![ty];
        f.extend_from_slice(&[0x80; 10]);
        f.push(0);
        assert_eq!(dec(&f), Err(VarintTooLong));
    }
    assert_eq!(dec(&[0x03, 1, b'a', 0xff]), Err(InvalidUtf8));
    assert_eq!(dec(&[0x03, 1, 0xe2, 0x9c]), Err(InvalidUtf8)); // cut char
    assert_eq!(
        dec(&[0x04, 1, b'a', 0xff]),
        Ok(Frame::Data {
            seq: 1,
            payload: Payload::Binary(Bytes::from_static(b"a\xff"))
        })
    );
    // ACK.
    assert_eq!(dec(&[0x05]), Err(Truncated("seq")));
    assert_eq!(dec(&[0x05, 0xff, 0xff]), Err(Truncated("seq")));
    assert_eq!(dec(&[0x06]), Err(Truncated("nonce")));
    assert_eq!(dec(&[0x07, 0x80]), Err(Truncated("nonce")));
    // Every error closes with 1002.
    for e in [
        Empty,
        UnknownType(9),
        Truncated("seq"),
        VarintTooLong,
        InvalidUtf8,
        FieldTooLong("connection_id"),
    ] {
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn lenient_where_the_spec_is_silent() {
    // Trailing bytes after the last field are ignored.
    assert_eq!(dec(&[0x05, 7, 0xee]), Ok(Frame::Ack { seq: 7 }));
    assert_eq!(dec(&[0x06, 7, 0xee]), Ok(Frame::Ping { nonce: 7 }));
    assert_eq!(dec(&[0x07, 7, 0xee]), Ok(Frame::Pong { nonce: 7 }));
    assert_eq!(
        dec(&[0x02, 0xfe, 3, 0]),
        Ok(Frame::Welcome {
            resumed: false,
            last_received: 3
        })
    );
    assert_eq!(
        dec(&[0x01, 0, 0, 1, 2, 9]),
        Ok(Frame::Hello {
            connection_id: String::new(),
            reconnect_token: String::new(),
            last_received: 1,
            first_seq: 2
        })
    );
}

#[test]
fn hello_constructor_checks_lengths() {
    assert_eq!(
        Frame::hello("x".repeat(256), "t", 0, 1),
        Err(FrameError::FieldTooLong("connection_id"))
    );
    assert_eq!(
        Frame::hello("x", "t".repeat(256), 0, 1),
        Err(FrameError::FieldTooLong("reconnect_token"))
    );
    assert!(Frame::hello("x".repeat(255), "t".repeat(255), 0, 1).is_ok());
}

#[test]
fn clamp_field_keeps_char_boundaries() {
    let s = format!("{}é", "a".repeat(254)); // 256 bytes, é at 254..256
    assert_eq!(clamp_field(&s), "a".repeat(254));
    let s = "b".repeat(300);
    assert_eq!(clamp_field(&s).len(), 255);
    assert_eq!(clamp_field("abc"), "abc");
}

#[test]
fn data_header_overhead() {
    let payload = Payload::Binary(Bytes::from(vec![7u8; 64]));
    for seq in [0, 1, 127, 128, 16383] {
        let enc = encode_data(seq, &payload);
        assert!(enc.len() <= 64 + 3, "seq {seq}: {} bytes", enc.len());
    }
    assert_eq!(encode_data(1, &payload).len(), 64 + 2);
    assert_eq!(encode_data(16384, &payload).len(), 64 + 4);
    assert_eq!(encode_data(u64::MAX, &payload).len(), 64 + 11);
}

#[test]
fn encode_data_from_the_shared_buffer_stays_intact() {
    // Frames cut from the per-thread buffer, some kept and some dropped
    // across many chunk refills, plus one too big for the buffer: each
    // must still hold exactly its own bytes.
    let mut kept = Vec::new();
    for seq in 1..=5_000u64 {
        let body = format!("message {seq} {}", "y".repeat((seq % 97) as usize));
        let payload = Payload::Text(ByteString::from(body));
        let frame = encode_data(seq, &payload);
        if seq % 3 == 0 {
            kept.push((frame, Frame::Data { seq, payload }));
        }
    }
    let big = Payload::Binary(Bytes::from(vec![9u8; SCRATCH_MAX_FRAME * 2]));
    kept.push((
        encode_data(7, &big),
        Frame::Data {
            seq: 7,
            payload: big,
        },
    ));
    for (frame, expected) in kept {
        assert_eq!(Frame::decode(frame).unwrap(), expected);
    }
}

#[test]
fn decode_is_zero_copy() {
    let wire = encode_data(300, &Payload::Binary(Bytes::from(vec![1u8; 100])));
    let range = wire.as_ptr_range();
    for ty in [TYPE_DATA_BINARY, TYPE_DATA_TEXT] {
        let mut raw = wire.to_vec();
        raw[0] = ty;
        let buf = Bytes::from(raw);
        let range = buf.as_ptr_range();
        let Ok(Frame::Data { seq, payload }) = Frame::decode(buf.clone()) else {
            panic!("not data");
        };
        assert_eq!(seq, 300);
        let p = payload.as_bytes().as_ptr_range();
        assert_eq!(p.start, range.start.wrapping_add(3));
        assert_eq!(p.end, range.end);
    }
    let Ok(Frame::Data { payload, .. }) = Frame::decode(wire.clone()) else {
        panic!("not data");
    };
    assert!(matches!(payload, Payload::Binary(_)));
    assert_eq!(payload.as_bytes().as_ptr_range().end, range.end);
}

#[test]
fn debug_redacts_the_token() {
    let f = Frame::hello("abc", "supersecrettoken", 0, 1).unwrap();
    let s = format!("{f:?}");
    assert!(!s.contains("supersecrettoken"), "{s}");
    assert!(s.contains("<redacted>") && s.contains("abc"), "{s}");
    let s = format!("{:?}", Frame::Ack { seq: 5 });
    assert_eq!(s, "Ack { seq: 5 }");
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        ".{0,40}".prop_map(|s: String| Payload::Text(s.into())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Payload::Binary(Bytes::from(v))),
    ]
}

/// A string of at most 255 bytes.
fn arb_field() -> impl Strategy<Value = String> {
    ".{0,60}".prop_map(|s: String| clamp_field(&s).to_owned())
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (arb_field(), arb_field(), any::<u64>(), any::<u64>()).prop_map(|(i, t, l, f)| {
            Frame::Hello {
                connection_id: i,
                reconnect_token: t,
                last_received: l,
                first_seq: f,
            }
        }),
        (any::<bool>(), any::<u64>()).prop_map(|(resumed, last_received)| {
            Frame::Welcome {
                resumed,
                last_received,
            }
        }),
        (any::<u64>(), arb_payload()).prop_map(|(seq, payload)| Frame::Data { seq, payload }),
        any::<u64>().prop_map(|seq| Frame::Ack { seq }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
    ]
}

proptest! {
    #[test]
    fn prop_frame_round_trips(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(Frame::decode(bytes), Ok(frame));
    }

    #[test]
    fn prop_decode_never_panics(
        ty in 0u8..8,
        rest in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let mut raw = vec![ty];
        raw.extend(rest);
        // Whatever decodes re-encodes to a frame that decodes the same.
        if let Ok(frame) = Frame::decode(Bytes::from(raw)) {
            prop_assert_eq!(Frame::decode(frame.to_bytes()), Ok(frame));
        }
    }

    #[test]
    fn prop_decode_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Frame::decode(Bytes::from(raw));
    }

    #[test]
    fn prop_varint_round_trips(v in any::<u64>()) {
        let enc = varint(v);
        prop_assert_eq!(enc.len(), varint_len(v));
        prop_assert_eq!(decode_varint(&enc), Ok(v));
    }
}
