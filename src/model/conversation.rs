//! Conversations (one thread on one channel) and contacts (a person, with identities on channels).

use serde::{Deserialize, Serialize};

use super::ids::{ContactId, ConversationId};
use super::message::ChannelRef;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub channel: ChannelRef,
    pub contact_id: ContactId,
    /// The channel's own key for this thread (chat id, `thread` of the api channel, ...).
    pub thread_key: String,
    /// The contact's address on this channel: where replies go.
    pub peer_address: String,
    pub subject: Option<String>,
    /// `open` or `closed`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_message_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub name: Option<String>,
    /// `email:ann@example.com`, `tel:+48600100200`, `telegram:12345`, `ext:web:visitor-42`.
    pub identities: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}
