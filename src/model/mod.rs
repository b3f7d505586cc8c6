//! Pure domain types: ids, messages, conversations, contacts, events, time.
//!
//! Invariant: model/ does no I/O. Everything here is plain data and plain functions.

pub mod conversation;
pub mod event;
pub mod ids;
pub mod message;
pub mod time;

pub use conversation::{Contact, Conversation};
pub use event::{Envelope, EventType};
pub use ids::{AttachmentId, ContactId, ConversationId, EventId, MessageId};
pub use message::{
    Arrival, Attachment, AttachmentUrls, CalendarAttendee, CalendarTime, ChannelRef, DeliveryReport, Direction,
    ErrorInfo, MailAuthentication, MailCalendar, MailEncryption, MailSignature, Message, Party, ProviderRef,
    SignatureStatus, SkippedAttachment, Status, StitchInfo,
};
