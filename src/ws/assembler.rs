//! [`Assembler`]: decoded WebSocket frames to whole messages, the same on
//! both ends: joins fragments, enforces the message size and fragment
//! count limits, and validates UTF-8 (awc's codec does not). Also how
//! actix's codec errors map to close codes ([`codec_violation`]).

use actix_http::ws::{CloseReason, Frame, Item};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::{close_code, Error, Payload};

/// What one frame amounts to.
#[derive(Debug, PartialEq)]
pub(crate) enum Inbound {
    /// A complete data message.
    Message(Payload),
    /// A fragment was stored; nothing to deliver yet.
    Partial,
    /// A ping to answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong, with its payload (our pings carry their send time).
    Pong(Bytes),
    /// The peer's Close frame.
    Close(Option<CloseReason>),
}

/// Joins fragmented messages frame by frame.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message_size: usize,
    max_fragments: usize,
    /// The message being joined: whether it is text, and the bytes so far.
    /// `None` between messages, so an idle connection holds no buffer.
    partial: Option<(bool, BytesMut)>,
    /// Frames of the message being joined, the first included.
    fragments: usize,
}

impl Assembler {
    /// An assembler whose fragment limit is out of the way (the client's
    /// default, 4096, written out: the client's options are not in a
    /// server-only build), for the tests of the other rules.
    #[cfg(test)]
    pub(crate) fn new(max_message_size: usize) -> Self {
        Self::with_limits(max_message_size, 4096)
    }

    /// An assembler that accepts messages of at most `max_message_size`
    /// bytes in at most `max_fragments` frames.
    pub(crate) fn with_limits(max_message_size: usize, max_fragments: usize) -> Self {
        Assembler {
            max_message_size,
            max_fragments: max_fragments.max(1),
            partial: None,
            fragments: 0,
        }
    }

    /// Feeds one frame. An error means the connection must be closed with
    /// the error's close code.
    pub(crate) fn push(&mut self, frame: Frame) -> Result<Inbound, Error> {
        match frame {
            Frame::Text(b) => Ok(Inbound::Message(Payload::Text(self.text(b)?))),
            Frame::Binary(b) => {
                self.check_size(b.len())?;
                Ok(Inbound::Message(Payload::Binary(b)))
            }
            Frame::Continuation(item) => self.continuation(item),
            Frame::Ping(b) => Ok(Inbound::Ping(b)),
            Frame::Pong(b) => Ok(Inbound::Pong(b)),
            Frame::Close(r) => Ok(Inbound::Close(r)),
        }
    }

    fn continuation(&mut self, item: Item) -> Result<Inbound, Error> {
        match item {
            Item::FirstText(b) => self.start(true, b),
            Item::FirstBinary(b) => self.start(false, b),
            Item::Continue(b) => {
                self.append(b)?;
                Ok(Inbound::Partial)
            }
            Item::Last(b) => {
                self.append(b)?;
                let (is_text, buf) = self.partial.take().ok_or_else(not_started)?;
                let bytes = buf.freeze();
                if is_text {
                    Ok(Inbound::Message(Payload::Text(self.text(bytes)?)))
                } else {
                    Ok(Inbound::Message(Payload::Binary(bytes)))
                }
            }
        }
    }

    fn start(&mut self, is_text: bool, b: Bytes) -> Result<Inbound, Error> {
        // The codec rejects a second first fragment, so any partial here is stale.
        self.partial = Some((is_text, BytesMut::new()));
        self.fragments = 0;
        self.append(b)?;
        Ok(Inbound::Partial)
    }

    fn append(&mut self, b: Bytes) -> Result<(), Error> {
        let max = self.max_message_size;
        let (_, buf) = self.partial.as_mut().ok_or_else(not_started)?;
        let size = buf.len() + b.len();
        if size > max {
            self.partial = None;
            return Err(Error::MessageTooLarge { size, max });
        }
        self.fragments += 1;
        if self.fragments > self.max_fragments {
            self.partial = None;
            return Err(Error::Protocol {
                close_code: close_code::MESSAGE_TOO_BIG,
                message: format!("message in more than {} fragments", self.max_fragments),
            });
        }
        buf.extend_from_slice(&b);
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), Error> {
        if size > self.max_message_size {
            return Err(Error::MessageTooLarge {
                size,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    fn text(&self, b: Bytes) -> Result<ByteString, Error> {
        self.check_size(b.len())?;
        ByteString::try_from(b).map_err(|_| Error::Protocol {
            close_code: close_code::INVALID_PAYLOAD,
            message: "text message is not valid UTF-8".into(),
        })
    }
}

/// What an I/O error of kind `InvalidData` from actix's WebSocket codec
/// stands for, when it is the peer breaking the protocol rather than the
/// network failing: (close code, reason). actix reports a frame with RSV
/// bits as such an error (by its message only), and actix-ws a text frame
/// that is not UTF-8 (with the `Utf8Error` inside). Shared by the client
/// and the server so both answer alike.
pub(crate) fn codec_violation(e: &std::io::Error) -> Option<(u16, &'static str)> {
    if e.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    if e.get_ref()
        .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
    {
        return Some((
            close_code::INVALID_PAYLOAD,
            "text message is not valid UTF-8",
        ));
    }
    e.to_string()
        .contains("reserved bits")
        .then_some((close_code::PROTOCOL_ERROR, "frame with reserved bits set"))
}

fn not_started() -> Error {
    Error::Protocol {
        close_code: close_code::PROTOCOL_ERROR,
        message: "continuation frame without a first fragment".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: Inbound) -> Payload {
        match i {
            Inbound::Message(p) => p,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn joins_text_fragments() {
        let mut a = Assembler::new(100);
        let first = Frame::Continuation(Item::FirstText(Bytes::from_static(b"he")));
        assert_eq!(a.push(first).unwrap(), Inbound::Partial);
        let mid = Frame::Continuation(Item::Continue(Bytes::from_static(b"ll")));
        assert_eq!(a.push(mid).unwrap(), Inbound::Partial);
        let last = Frame::Continuation(Item::Last(Bytes::from_static(b"o")));
        assert_eq!(msg(a.push(last).unwrap()), Payload::Text("hello".into()));
        assert!(a.partial.is_none(), "buffer released after the message");
    }

    #[test]
    fn joins_binary_fragments() {
        let mut a = Assembler::new(100);
        a.push(Frame::Continuation(Item::FirstBinary(Bytes::from_static(
            &[1],
        ))))
        .unwrap();
        let p = msg(a
            .push(Frame::Continuation(Item::Last(Bytes::from_static(&[2]))))
            .unwrap());
        assert_eq!(p, Payload::Binary(Bytes::from_static(&[1, 2])));
    }

    #[test]
    fn utf8_split_across_fragments_is_valid() {
        let mut a = Assembler::new(100);
        let euro = "€".as_bytes();
        a.push(Frame::Continuation(Item::FirstText(
            Bytes::copy_from_slice(&euro[..1]),
        )))
        .unwrap();
        let p = a
            .push(Frame::Continuation(Item::Last(Bytes::copy_from_slice(
                &euro[1..],
            ))))
            .unwrap();
        assert_eq!(msg(p), Payload::Text("€".into()));
    }

    #[test]
    fn invalid_utf8_is_1007() {
        let mut a = Assembler::new(100);
        let err = a
            .push(Frame::Text(Bytes::from_static(&[0xff, 0xfe])))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1007));
    }

    #[test]
    fn oversize_single_frame_and_fragments_are_1009() {
        let mut a = Assembler::new(4);
        let err = a
            .push(Frame::Binary(Bytes::from_static(b"12345")))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1009));
        assert!(a.push(Frame::Binary(Bytes::from_static(b"1234"))).is_ok());
        a.push(Frame::Continuation(Item::FirstBinary(Bytes::from_static(
            b"123",
        ))))
        .unwrap();
        let err = a
            .push(Frame::Continuation(Item::Continue(Bytes::from_static(
                b"45",
            ))))
            .unwrap_err();
        assert!(matches!(err, Error::MessageTooLarge { size: 5, max: 4 }));
        assert!(a.partial.is_none(), "an oversize message frees its buffer");
    }

    #[test]
    fn continuation_without_start_is_protocol_error() {
        let mut a = Assembler::new(4);
        let err = a
            .push(Frame::Continuation(Item::Last(Bytes::from_static(b"x"))))
            .unwrap_err();
        assert_eq!(err.close_code(), Some(1002));
    }

    #[test]
    fn control_frames_pass_through() {
        let mut a = Assembler::new(4);
        assert_eq!(
            a.push(Frame::Ping(Bytes::from_static(b"p"))).unwrap(),
            Inbound::Ping(Bytes::from_static(b"p"))
        );
        assert_eq!(
            a.push(Frame::Pong(Bytes::new())).unwrap(),
            Inbound::Pong(Bytes::new())
        );
        assert_eq!(a.push(Frame::Close(None)).unwrap(), Inbound::Close(None));
    }

    #[test]
    fn fragment_count_is_bounded_and_reset_per_message() {
        let mut a = Assembler::with_limits(100, 3);
        let first = || Frame::Continuation(Item::FirstBinary(Bytes::from_static(b"a")));
        let more = || Frame::Continuation(Item::Continue(Bytes::from_static(b"b")));
        let last = || Frame::Continuation(Item::Last(Bytes::from_static(b"c")));
        for _ in 0..2 {
            // Exactly 3 frames, twice: the count starts again per message.
            a.push(first()).unwrap();
            a.push(more()).unwrap();
            assert_eq!(
                msg(a.push(last()).unwrap()),
                Payload::Binary(Bytes::from_static(b"abc"))
            );
        }
        a.push(first()).unwrap();
        a.push(more()).unwrap();
        a.push(more()).unwrap();
        // The fourth frame of a message with a limit of 3.
        let e = a.push(more()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol {
                    close_code: 1009,
                    ..
                }
            ),
            "{e:?}"
        );
        let mut one = Assembler::with_limits(100, 1);
        one.push(first()).unwrap();
        let e = one.push(last()).unwrap_err();
        assert_eq!(e.close_code(), Some(1009));
        assert!(one.partial.is_none());
    }
}
