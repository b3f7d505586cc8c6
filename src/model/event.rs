//! Event types and the envelope every consumer sees (webhook body, `/v1/events` item, SSE data).

use serde::{Deserialize, Serialize};

/// Every event type the log can hold. Consumers filter on these names with globs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    MessageReceived,
    MessageQueued,
    MessageSent,
    MessageDelivered,
    MessageRead,
    MessageFailed,
    ConversationCreated,
    ConversationUpdated,
    ContactCreated,
    ContactUpdated,
    /// A channel started failing (credentials, connection); sent once per new error.
    ChannelError,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::MessageReceived,
        EventType::MessageQueued,
        EventType::MessageSent,
        EventType::MessageDelivered,
        EventType::MessageRead,
        EventType::MessageFailed,
        EventType::ConversationCreated,
        EventType::ConversationUpdated,
        EventType::ContactCreated,
        EventType::ContactUpdated,
        EventType::ChannelError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageReceived => "message.received",
            EventType::MessageQueued => "message.queued",
            EventType::MessageSent => "message.sent",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageRead => "message.read",
            EventType::MessageFailed => "message.failed",
            EventType::ConversationCreated => "conversation.created",
            EventType::ConversationUpdated => "conversation.updated",
            EventType::ContactCreated => "contact.created",
            EventType::ContactUpdated => "contact.updated",
            EventType::ChannelError => "channel.error",
        }
    }
}

/// The envelope as it is read back from the log. `data` stays raw JSON so the log's bytes are
/// passed through without re-serialising.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub data: Box<serde_json::value::RawValue>,
}

/// Does `pattern` (`*`, `message.*`, `message.sent`) select `event_type`? A `*` matches any run
/// of characters, so `*.failed` works too.
pub fn glob_matches(pattern: &str, event_type: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), event_type.as_bytes())
}

/// Which events a reader takes: a webhook consumer's `events` and `channels`, or `/v1/events`'s
/// `types` and `channels`. Empty lists take everything; with channels, only events of those
/// channels (`contact.*` events belong to none: a contact may write on several channels).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Event type globs (`message.*`).
    pub types: Vec<String>,
    /// Channel ids.
    pub channels: Vec<String>,
}

impl EventFilter {
    /// Whether an event of type `kind` with `data` (its JSON) is taken. The data is read only
    /// when there is a channel list.
    pub fn takes(&self, kind: &str, data: &str) -> bool {
        selects(&self.types, kind)
            && (self.channels.is_empty() || channel_of(data).is_some_and(|channel| self.channels.contains(&channel)))
    }
}

/// The channel an event's data belongs to (`data.channel.id`: messages, conversations,
/// `channel.error`); `None` for contacts, which may write on several channels.
pub fn channel_of(data: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Data {
        channel: Option<Channel>,
    }
    #[derive(Deserialize)]
    struct Channel {
        id: String,
    }
    serde_json::from_str::<Data>(data).ok()?.channel.map(|c| c.id)
}

/// An event type filter: empty means everything.
pub fn selects(patterns: &[String], event_type: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob_matches(p, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_select_types() {
        let cases = [
            ("*", "message.sent", true),
            ("message.*", "message.sent", true),
            ("message.*", "conversation.created", false),
            ("message.sent", "message.sent", true),
            ("message.sent", "message.sent2", false),
            ("*.failed", "message.failed", true),
            ("conversation.*", "conversation.updated", true),
        ];
        for (p, t, ok) in cases {
            assert_eq!(glob_matches(p, t), ok, "{p} vs {t}");
        }
        assert!(selects(&[], "anything"));
        assert!(selects(&["a.*".into(), "message.*".into()], "message.read"));
    }

    #[test]
    fn an_events_channel_is_read_from_its_data() {
        let message = r#"{"id":"msg_1","channel":{"id":"support","type":"email"},"text":"{\"channel\":1}"}"#;
        let contact = r#"{"id":"ctc_1","identities":["email:ann@example.org"]}"#;
        assert_eq!(channel_of(message).as_deref(), Some("support"));
        assert_eq!(channel_of(contact), None);
        assert_eq!(channel_of("not json"), None);

        let sales = EventFilter { types: vec!["message.*".into()], channels: vec!["sales".into()] };
        assert!(!sales.takes("message.received", message));
        let support = EventFilter { types: Vec::new(), channels: vec!["support".into()] };
        assert!(support.takes("message.received", message));
        assert!(!support.takes("contact.created", contact));
        assert!(EventFilter::default().takes("contact.created", contact));
    }
}
