//! Status transitions of outbound messages, each with its event, never backwards (invariant 7).
//!
//! Used by the send engine (`sent`, `failed`) and by channels reporting `delivered`/`read` or a
//! bounce later. A transition that would move a status backwards is ignored and says so.

use rusqlite::Connection;

use crate::model::{time, ErrorInfo, EventType, Message, Status};
use crate::store::{self, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Sent { provider_message_id: Option<String> },
    Delivered,
    Read,
    Failed(ErrorInfo),
}

/// Applies `transition` to message `id` inside the caller's transaction. Returns the updated
/// message, or `None` when the message is unknown or the transition would not move it forward.
pub fn apply(conn: &Connection, id: &str, transition: Transition, now_ms: i64) -> Result<Option<Message>, StoreError> {
    let Some(mut message) = store::messages::get(conn, id)? else { return Ok(None) };
    let (next, event) = match &transition {
        Transition::Sent { .. } => (Status::Sent, EventType::MessageSent),
        Transition::Delivered => (Status::Delivered, EventType::MessageDelivered),
        Transition::Read => (Status::Read, EventType::MessageRead),
        Transition::Failed(_) => (Status::Failed, EventType::MessageFailed),
    };
    if !message.status.can_become(next) {
        tracing::debug!(
            message_id = id,
            from = message.status.as_str(),
            to = next.as_str(),
            "status update ignored: not forward"
        );
        return Ok(None);
    }
    let now = Some(time::rfc3339(now_ms));
    message.status = next;
    match transition {
        Transition::Sent { provider_message_id } => {
            message.sent_at = now;
            if provider_message_id.is_some() {
                message.provider.message_id = provider_message_id;
            }
        }
        Transition::Delivered => message.delivered_at = now,
        Transition::Read => message.read_at = now,
        Transition::Failed(error) => {
            message.failed_at = now;
            message.error = Some(error);
        }
    }
    store::messages::update(conn, &message)?;
    store::events::append(conn, event, message.conversation_id.as_str(), &message)?;
    Ok(Some(message))
}
