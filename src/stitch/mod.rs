//! Thread stitching and identity linking: which conversation and which contact a message joins.
//!
//! Pure decisions over what the store found; the pipeline does the lookups and the writes. A
//! contact owns identities (`email:…`, `tel:+…`, `telegram:…`, `ext:<channel>:<address>`), so
//! the same phone on SMS and WhatsApp is one contact. A conversation is one thread on one
//! channel, found by the channel's thread key.

pub mod email;

use crate::channels::RawInbound;
use crate::model::{ChannelRef, Contact, ContactId, Conversation, ConversationId, StitchInfo};

/// Where a message goes, and what has to be created for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub contact: Found<ContactId, Contact>,
    pub conversation: Found<Conversation, Conversation>,
    pub stitch: StitchInfo,
}

/// Either an existing record or a new one to insert.
#[derive(Clone, Debug, PartialEq)]
pub enum Found<E, N> {
    Existing(E),
    New(N),
}

impl Plan {
    pub fn contact_id(&self) -> &ContactId {
        match &self.contact {
            Found::Existing(id) => id,
            Found::New(c) => &c.id,
        }
    }

    pub fn conversation(&self) -> &Conversation {
        match &self.conversation {
            Found::Existing(c) | Found::New(c) => c,
        }
    }
}

/// Decides from the sender's known contact (by identity) and the conversation found for the
/// message (by thread key, or by mail threading), with the reason it was found.
pub fn plan(
    raw: &RawInbound,
    contact: Option<ContactId>,
    conversation: Option<(Conversation, &str)>,
    now: &str,
) -> Plan {
    let owner = raw.owner();
    let contact = match contact {
        Some(id) => Found::Existing(id),
        None => Found::New(Contact {
            id: ContactId::new(),
            name: owner.name.clone(),
            identities: vec![raw.identity.clone()],
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }),
    };
    let contact_id = match &contact {
        Found::Existing(id) => id.clone(),
        Found::New(c) => c.id.clone(),
    };
    let (conversation, reason) = match conversation {
        Some((c, reason)) => (Found::Existing(c), reason),
        None => (
            Found::New(new_conversation(
                &raw.channel_id,
                raw.channel_type,
                &raw.thread_key,
                &contact_id,
                &owner.address,
                raw.subject.clone(),
                now,
            )),
            "new",
        ),
    };
    Plan { contact, conversation, stitch: StitchInfo { reason: reason.to_owned() } }
}

/// A fresh open conversation on a channel.
pub fn new_conversation(
    channel_id: &str,
    channel_type: &str,
    thread_key: &str,
    contact_id: &ContactId,
    peer_address: &str,
    subject: Option<String>,
    now: &str,
) -> Conversation {
    Conversation {
        id: ConversationId::new(),
        channel: ChannelRef { id: channel_id.to_owned(), kind: channel_type.to_owned() },
        contact_id: contact_id.clone(),
        thread_key: thread_key.to_owned(),
        peer_address: peer_address.to_owned(),
        subject,
        status: "open".to_owned(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        last_message_at: Some(now.to_owned()),
    }
}

/// The identity of an address on a channel of the given type. Mail and phone identities are
/// global (one person across channels); opaque addresses are scoped to their channel.
pub fn identity_for(channel_type: &str, channel_id: &str, address: &str) -> String {
    match channel_type {
        // One person whether an agent typed their domain in Unicode or their mail named it in
        // A-labels.
        "email" => format!("email:{}", crate::channels::email::ascii_domain(address.trim()).to_lowercase()),
        "sms" | "whatsapp" => format!("tel:{}", address.trim()),
        _ => format!("ext:{channel_id}:{address}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Party;

    fn raw() -> RawInbound {
        RawInbound {
            channel_id: "web".into(),
            channel_type: "api",
            provider_message_id: None,
            dedup_key: None,
            superseded_dedup_key: None,
            provider_thread_id: None,
            thread_key: "chat-1".into(),
            from: Party { address: "v1".into(), name: Some("Ann".into()) },
            reply_to: None,
            forwarded_from: None,
            identity: "ext:web:v1".into(),
            to: vec![],
            cc: vec![],
            sent_at: None,
            received_at: None,
            subject: None,
            text: Some("hi".into()),
            html: None,
            reply_text: None,
            attachments: vec![],
            attachments_skipped: vec![],
            mail: None,
            auto_reply: false,
            delivery_report: None,
            sent_by_us: false,
            source: None,
            accepted_refusal: None,
            authentication: None,
            signature: None,
            encryption: None,
            calendar: None,
            sender_certificates: Vec::new(),
            sender_autocrypt_key: None,
            refusal: None,
        }
    }

    #[test]
    fn a_mail_address_is_one_identity_in_unicode_and_in_a_labels() {
        let typed = identity_for("email", "support", " Daria@Bücher.Example ");
        assert_eq!(typed, "email:daria@xn--bcher-kva.example");
        assert_eq!(identity_for("email", "support", "daria@xn--bcher-kva.example"), typed);
        assert_eq!(identity_for("email", "support", "Ann@Example.org"), "email:ann@example.org");
    }

    #[test]
    fn unknown_sender_and_thread_create_both() {
        let p = plan(&raw(), None, None, "t");
        assert!(matches!(p.contact, Found::New(ref c) if c.identities == vec!["ext:web:v1".to_string()]));
        assert!(
            matches!(p.conversation, Found::New(ref c) if c.thread_key == "chat-1" && c.contact_id == *p.contact_id())
        );
        assert_eq!(p.stitch.reason, "new");
    }

    #[test]
    fn known_thread_is_joined() {
        let owner = ContactId::new();
        let existing = new_conversation("web", "api", "chat-1", &owner, "v0", None, "t");
        let sender = ContactId::new();
        let p = plan(&raw(), Some(sender.clone()), Some((existing.clone(), "thread")), "t");
        assert_eq!(p.contact, Found::Existing(sender));
        assert_eq!(p.conversation, Found::Existing(existing));
        assert_eq!(p.stitch.reason, "thread");
    }

    #[test]
    fn identities_are_global_for_mail_and_phone() {
        assert_eq!(identity_for("email", "support", " Ann@Example.COM"), "email:ann@example.com");
        assert_eq!(identity_for("sms", "sms1", "+48600100200"), identity_for("whatsapp", "wa", "+48600100200"));
        assert_eq!(identity_for("api", "web", "visitor-42"), "ext:web:visitor-42");
    }
}
