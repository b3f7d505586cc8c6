//! The body of `POST /v1/messages`:
//! `{"conversation_id": "cnv_…", "text": "..."}` (reply on the conversation's channel, to its
//! contact's address there) or `{"channel": "web", "to": "visitor-42", "text": "..."}`, with
//! optional `html`, `subject`, `attachments`, `in_reply_to`, `auto_reply`, and for mail `cc` and
//! `bcc` (addresses).

use serde::Deserialize;

use crate::channels::RawAttachment;
use crate::json_input::{self, AttachmentBody, FieldError, InputError};
use crate::model::{ConversationId, MessageId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    conversation_id: Option<String>,
    channel: Option<String>,
    to: Option<String>,
    text: Option<String>,
    html: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
    in_reply_to: Option<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    bcc: Vec<String>,
    #[serde(default)]
    auto_reply: bool,
}

/// Cc (and, apart, Bcc) recipients one request may name (a reply-all, not a mailing).
const MAX_CC: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Conversation(ConversationId),
    Direct { channel: String, to: String },
}

#[derive(Clone, Debug)]
pub struct SendRequest {
    pub target: Target,
    pub text: Option<String>,
    pub html: Option<String>,
    pub subject: Option<String>,
    pub attachments: Vec<RawAttachment>,
    pub in_reply_to: Option<MessageId>,
    /// Trimmed, each once (compared without case).
    pub cc: Vec<String>,
    /// As `cc`; in the envelope only, never in the mail's header.
    pub bcc: Vec<String>,
    /// Sent by a machine, not a person (a helpdesk's acknowledgement): marked so for the
    /// recipient's own automatons (RFC 3834), and never sent in answer to an automatic message.
    pub auto_reply: bool,
}

pub fn parse(body: &[u8], max_attachment_bytes: usize) -> Result<SendRequest, InputError> {
    let body: SendBody = json_input::parse(body)?;
    let invalid = |field: &str, message: &str| InputError::Invalid(FieldError::new(field, message));
    let target = match (body.conversation_id, body.channel, body.to) {
        (Some(id), None, None) => Target::Conversation(
            ConversationId::parse(&id)
                .ok_or_else(|| invalid("conversation_id", "must be a conversation id (cnv_…)"))?,
        ),
        (None, Some(channel), Some(to)) => {
            if to.trim().is_empty() || to.len() > 256 {
                return Err(invalid("to", "must be 1-256 bytes"));
            }
            Target::Direct { channel, to: to.trim().to_owned() }
        }
        (None, Some(_), None) => return Err(invalid("to", "is required with channel")),
        (None, None, Some(_)) => return Err(invalid("channel", "is required with to")),
        (None, None, None) => return Err(invalid("conversation_id", "give conversation_id, or channel and to")),
        (Some(_), _, _) => return Err(invalid("conversation_id", "give conversation_id or channel and to, not both")),
    };
    let text = body.text.filter(|t| !t.is_empty());
    let html = body.html.filter(|h| !h.is_empty());
    if text.is_none() && html.is_none() && body.attachments.is_empty() {
        return Err(invalid("text", "one of text, html or attachments is required"));
    }
    let in_reply_to = body
        .in_reply_to
        .map(|id| MessageId::parse(&id).ok_or_else(|| invalid("in_reply_to", "must be a message id (msg_…)")))
        .transpose()?;
    let attachments = json_input::decode_attachments(body.attachments, max_attachment_bytes)?;
    let cc = copies("cc", body.cc)?;
    let bcc = copies("bcc", body.bcc)?;
    Ok(SendRequest {
        target,
        text,
        html,
        subject: body.subject,
        attachments,
        in_reply_to,
        cc,
        bcc,
        auto_reply: body.auto_reply,
    })
}

/// A `cc` or `bcc` list: at most `MAX_CC`, each address trimmed, 1-256 bytes, named once.
fn copies(field: &str, list: Vec<String>) -> Result<Vec<String>, InputError> {
    let invalid = |message: &str| InputError::Invalid(FieldError::new(field, message));
    if list.len() > MAX_CC {
        return Err(invalid(&format!("at most {MAX_CC} addresses")));
    }
    let mut out: Vec<String> = Vec::new();
    for address in list {
        let address = address.trim();
        if address.is_empty() || address.len() > 256 {
            return Err(invalid("each address must be 1-256 bytes"));
        }
        if !out.iter().any(|c| c.eq_ignore_ascii_case(address)) {
            out.push(address.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> String {
        match parse(body.as_bytes(), 1024) {
            Err(InputError::Invalid(e)) => e.field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn targets() {
        let r = parse(br#"{"channel": "web", "to": "v1", "text": "hi"}"#, 1024).unwrap();
        assert_eq!(r.target, Target::Direct { channel: "web".into(), to: "v1".into() });
        let r = parse(br#"{"conversation_id": "cnv_01ABC", "text": "hi"}"#, 1024).unwrap();
        assert!(matches!(r.target, Target::Conversation(_)));
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(field(r#"{"text": "hi"}"#), "conversation_id");
        assert_eq!(field(r#"{"channel": "web", "text": "hi"}"#), "to");
        assert_eq!(field(r#"{"to": "x", "text": "hi"}"#), "channel");
        assert_eq!(field(r#"{"conversation_id": "msg_1", "text": "hi"}"#), "conversation_id");
        assert_eq!(field(r#"{"channel": "web", "to": "v1"}"#), "text");
        assert_eq!(field(r#"{"channel": "web", "to": "v1", "text": "x", "in_reply_to": "cnv_1"}"#), "in_reply_to");
        assert_eq!(field(r#"{"channel": "web", "to": "v1", "text": 5}"#), "text");
        assert_eq!(field(r#"{"channel": "web", "to": "v1", "text": "x", "cc": "a@b"}"#), "cc");
        assert_eq!(field(r#"{"channel": "web", "to": "v1", "text": "x", "cc": [" "]}"#), "cc");
        assert_eq!(field(r#"{"channel": "web", "to": "v1", "text": "x", "bcc": [""]}"#), "bcc");
    }

    #[test]
    fn cc_is_trimmed_and_named_once() {
        let r = parse(br#"{"channel": "m", "to": "a@x", "text": "x", "cc": [" b@x ", "B@X", "c@x"]}"#, 1024).unwrap();
        assert_eq!(r.cc, vec!["b@x".to_owned(), "c@x".to_owned()]);
        let many: Vec<String> = (0..=MAX_CC).map(|i| format!("c{i}@x")).collect();
        let body = serde_json::json!({"channel": "m", "to": "a@x", "text": "x", "cc": many}).to_string();
        assert!(matches!(parse(body.as_bytes(), 1024), Err(InputError::Invalid(e)) if e.field == "cc"));
    }
}
