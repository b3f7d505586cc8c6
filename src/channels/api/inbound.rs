//! The inbound body of `POST /v1/channels/{id}/inbound` and its translation into `RawInbound`.
//!
//! ```json
//! {"from": {"address": "visitor-42", "name": "Ann"}, "text": "Hello", "html": null,
//!  "subject": null, "external_id": "abc-1", "thread": "chat-42",
//!  "attachments": [{"filename": "a.png", "content_type": "image/png", "content_base64": "..."}]}
//! ```

use serde::Deserialize;

use crate::channels::RawInbound;
use crate::json_input::{self, AttachmentBody, FieldError, InputError};
use crate::model::Party;

/// Longest accepted id-like field (`external_id`, `thread`, `from.address`).
const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundBody {
    from: Sender,
    text: Option<String>,
    html: Option<String>,
    subject: Option<String>,
    external_id: Option<String>,
    thread: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sender {
    address: String,
    name: Option<String>,
}

/// Parses and checks a body; on success nothing is missing for the pipeline.
pub fn parse(channel_id: &str, body: &[u8], max_attachment_bytes: usize) -> Result<RawInbound, InputError> {
    let body: InboundBody = json_input::parse(body)?;
    let invalid = |field: &str, message: &str| InputError::Invalid(FieldError::new(field, message));

    let address = body.from.address.trim().to_owned();
    if address.is_empty() {
        return Err(invalid("from.address", "must not be empty"));
    }
    for (field, value) in
        [("from.address", Some(&address)), ("external_id", body.external_id.as_ref()), ("thread", body.thread.as_ref())]
    {
        if let Some(v) = value {
            if v.len() > MAX_KEY_LEN {
                return Err(invalid(field, &format!("must be at most {MAX_KEY_LEN} bytes")));
            }
            if v.is_empty() {
                return Err(invalid(field, "must not be empty when given"));
            }
        }
    }
    let text = body.text.filter(|t| !t.is_empty());
    let html = body.html.filter(|h| !h.is_empty());
    if text.is_none() && html.is_none() && body.attachments.is_empty() {
        return Err(invalid("text", "one of text, html or attachments is required"));
    }

    let attachments = json_input::decode_attachments(body.attachments, max_attachment_bytes)?;

    Ok(RawInbound {
        channel_id: channel_id.to_owned(),
        channel_type: "api",
        identity: crate::stitch::identity_for("api", channel_id, &address),
        thread_key: body.thread.unwrap_or_else(|| address.clone()),
        dedup_key: body.external_id.clone(),
        superseded_dedup_key: None,
        provider_message_id: body.external_id,
        provider_thread_id: None,
        from: Party { address, name: body.from.name.filter(|n| !n.is_empty()) },
        reply_to: None,
        forwarded_from: None,
        to: Vec::new(),
        cc: Vec::new(),
        sent_at: None,
        received_at: None,
        subject: body.subject,
        text,
        html,
        reply_text: None,
        attachments,
        attachments_skipped: Vec::new(),
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
    })
}
