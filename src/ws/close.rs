//! Close reasons, built one way for both ends.

use actix_http::ws::{CloseCode, CloseReason};

/// The Close frame's reason for `code`; an empty `text` sends no description
/// (RFC 6455 §5.5.1 makes the text optional, and some peers log an empty one
/// as a malformed reason).
pub(crate) fn close_reason(code: u16, text: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: (!text.is_empty()).then(|| text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_text_sends_no_description() {
        let r = close_reason(1000, "");
        assert_eq!(r.code, CloseCode::Normal);
        assert_eq!(r.description, None);
        let r = close_reason(4001, "going away");
        assert_eq!(u16::from(r.code), 4001);
        assert_eq!(r.description.as_deref(), Some("going away"));
    }
}
