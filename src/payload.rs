//! [`Payload`]: the body of a WebSocket message, the noun every layer
//! shares (events, the outbox, the protocol, both ends). It sits at the
//! bottom of the crate and depends on nothing in it but the error type
//! (for [`Payload::json`]).

use bytes::Bytes;
use bytestring::ByteString;

use crate::Error;

/// A message body: text (valid UTF-8, checked on receipt) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message.
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Payload {
    /// The size of the body in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(t) => Some(t),
            Payload::Binary(_) => None,
        }
    }

    /// The raw bytes of either kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(t) => t.as_bytes(),
            Payload::Binary(b) => b,
        }
    }

    /// Parses the body as JSON into `T`: the receiving side of
    /// `send_json`. A binary message is parsed from its bytes too (JSON
    /// sent as UTF-8 bytes); `T` may borrow from the payload (`&str`
    /// fields).
    ///
    /// # Errors
    /// [`Error::Deserialize`], which says whether the message was text or
    /// binary, its size, the type asked for, and serde's error with the
    /// line and column where parsing stopped.
    ///
    /// # Examples
    /// ```
    /// use resilient_ws::{Error, Payload};
    ///
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Tick { symbol: String, price: f64 }
    ///
    /// let p = Payload::from(r#"{"symbol":"ABC","price":1.5}"#);
    /// let tick: Tick = p.json()?;
    /// assert_eq!(tick, Tick { symbol: "ABC".into(), price: 1.5 });
    ///
    /// let bad = Payload::from(r#"{"symbol":"ABC","price":"high"}"#);
    /// match bad.json::<Tick>() {
    ///     Err(Error::Deserialize { binary: false, line: 1, column, .. }) => assert!(column > 0),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, Error> {
        serde_json::from_slice(self.as_bytes()).map_err(|e| Error::Deserialize {
            binary: matches!(self, Payload::Binary(_)),
            len: self.len(),
            target: std::any::type_name::<T>(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::Text(s.into())
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::Text(s.into())
    }
}

impl From<ByteString> for Payload {
    fn from(s: ByteString) -> Self {
        Payload::Text(s)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Binary(b.into())
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Payload::Binary(Bytes::copy_from_slice(b))
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::Binary(b)
    }
}
