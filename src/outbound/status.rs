//! Status transitions of outbound messages, each with its event, never backwards (invariant 7).
//!
//! Used by the send engine (`sent`, `failed`) and by channels reporting `delivered`/`read` or a
//! bounce later. A transition that would move a status backwards is ignored and says so.

use rusqlite::Connection;

use crate::model::{time, ErrorInfo, EventType, MailEncryption, Message, Status};
use crate::store::{self, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// `encryption`: that the message went out encrypted (a mail, `openpgp_encrypt` or `smime_encrypt`),
    /// or in clear on a channel that encrypts when possible (kind `none`, saying why).
    Sent {
        provider_message_id: Option<String>,
        encryption: Option<MailEncryption>,
    },
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
        Transition::Sent { provider_message_id, encryption } => {
            message.sent_at = now;
            if encryption.is_some() {
                message.encryption = encryption;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChannelRef, ContactId, ConversationId, Direction, MessageId, Party, ProviderRef};
    use crate::store::Store;

    fn queued() -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            contact_id: ContactId::new(),
            channel: ChannelRef { id: "web".into(), kind: "api".into() },
            direction: Direction::Outbound,
            status: Status::Queued,
            from: Party { address: "web".into(), name: None },
            reply_to: None,
            forwarded_from: None,
            to: vec![],
            cc: vec![],
            bcc: vec![],
            subject: None,
            text: Some("x".into()),
            html: None,
            reply_text: None,
            attachments: vec![],
            attachments_skipped: vec![],
            source: None,
            in_reply_to: None,
            provider: ProviderRef::default(),
            stitch: None,
            auto_reply: false,
            delivery_report: None,
            authentication: None,
            signature: None,
            encryption: None,
            calendar: None,
            created_at: time::rfc3339(0),
            received_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            error: None,
            pruned_at: None,
        }
    }

    /// Late and out-of-order provider callbacks never move a message backwards, and each
    /// accepted step writes exactly one event.
    #[tokio::test]
    async fn out_of_order_updates_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut message = queued();
        let contact = crate::model::Contact {
            id: message.contact_id.clone(),
            name: None,
            identities: vec!["ext:web:v".into()],
            created_at: time::rfc3339(0),
            updated_at: time::rfc3339(0),
        };
        let conversation =
            crate::stitch::new_conversation("web", "api", "v", &contact.id, "v", None, &time::rfc3339(0));
        message.conversation_id = conversation.id.clone();
        let id = message.id.to_string();
        let applied = store
            .write(move |c| {
                store::conversations::insert_contact(c, &contact, 0)?;
                store::conversations::insert(c, &conversation, 0, None)?;
                store::messages::insert(c, &message, 0, None)?;
                let steps = [
                    Transition::Read,
                    Transition::Delivered,
                    Transition::Sent { provider_message_id: Some("late".into()), encryption: None },
                    Transition::Failed(ErrorInfo {
                        code: "bounce".into(),
                        message: "late bounce".into(),
                        permanent: true,
                    }),
                ];
                let mut applied = Vec::new();
                for step in steps {
                    applied.push(apply(c, message.id.as_str(), step, 1)?.map(|m| m.status));
                }
                Ok(applied)
            })
            .await
            .unwrap();
        assert_eq!(applied, vec![Some(Status::Read), None, None, None]);
        let (message, events) = store
            .read(move |c| Ok((store::messages::get(c, &id)?.unwrap(), store::events::after(c, 0, 100)?)))
            .await
            .unwrap();
        assert_eq!(message.status, Status::Read);
        assert_eq!(message.provider.message_id, None);
        assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), vec!["message.read"]);
        store.close();
    }
}
