//! The event fan-out rule shared by the client and the server (from
//! actix-broker): `try_send` first; on a full mailbox `do_send` anyway, so
//! an event is never dropped for a slow subscriber; a subscriber is removed
//! only when its actor is gone.

use actix::{dev::SendError, Message, Recipient};

/// Sends one event to one subscriber; `true` if its actor is gone (remove
/// it).
pub(crate) fn deliver<M>(r: &Recipient<M>, msg: M) -> bool
where
    M: Message<Result = ()> + Send + 'static,
{
    match r.try_send(msg) {
        Ok(()) => false,
        Err(SendError::Full(m)) => {
            r.do_send(m);
            false
        }
        Err(SendError::Closed(_)) => true,
    }
}
