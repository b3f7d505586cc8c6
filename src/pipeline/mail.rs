//! The store side of mail threading: `MailLookup` over the open write transaction.

use rusqlite::Connection;

use crate::model::ContactId;
use crate::stitch::email::MailLookup;
use crate::store::{self, StoreError};

pub(super) struct StoreLookup<'a> {
    pub conn: &'a Connection,
    pub channel_id: &'a str,
    /// The sender's contact, when already known (a new sender has no conversations).
    pub contact: Option<&'a ContactId>,
    pub identity: &'a str,
    /// Subject matches only among conversations active since then (ms).
    pub subject_since: i64,
    /// The mail is ours (`RawInbound::sent_by_us`): it may join any conversation its headers
    /// name, without the sender guard.
    pub any_sender: bool,
}

impl MailLookup for StoreLookup<'_> {
    type Error = StoreError;

    fn by_header(&mut self, header_id: &str) -> Result<Vec<String>, StoreError> {
        store::mail::conversations_by_header(self.conn, self.channel_id, header_id)
    }

    fn exists(&mut self, conversation_id: &str) -> Result<bool, StoreError> {
        Ok(store::conversations::get(self.conn, conversation_id)?.is_some_and(|c| c.channel.id == self.channel_id))
    }

    fn sender_allowed(&mut self, conversation_id: &str) -> Result<bool, StoreError> {
        if self.any_sender || store::mail::is_participant(self.conn, conversation_id, self.identity)? {
            return Ok(true);
        }
        let Some(contact) = self.contact else { return Ok(false) };
        Ok(store::conversations::get(self.conn, conversation_id)?.is_some_and(|c| &c.contact_id == contact))
    }

    fn by_subject(&mut self, subject_key: &str) -> Result<Option<String>, StoreError> {
        let Some(contact) = self.contact else { return Ok(None) };
        store::mail::conversation_by_subject(
            self.conn,
            self.channel_id,
            contact.as_str(),
            subject_key,
            self.subject_since,
        )
    }

    fn by_calendar_uid(&mut self, uid: &str) -> Result<Vec<String>, StoreError> {
        store::mail::conversations_by_calendar_uid(self.conn, self.channel_id, uid)
    }
}
