//! Turns decoded frames into whole messages: joins fragments, enforces the
//! message size limit, and validates UTF-8 (awc's codec does not).

use actix_http::ws::{CloseReason, Frame, Item};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::{close_code, events::Payload, Error};

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
    /// The message being joined: whether it is text, and the bytes so far.
    /// `None` between messages, so an idle connection holds no buffer.
    partial: Option<(bool, BytesMut)>,
}

impl Assembler {
    pub(crate) fn new(max_message_size: usize) -> Self {
        Assembler {
            max_message_size,
            partial: None,
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
}
