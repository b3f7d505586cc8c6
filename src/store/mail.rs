//! Mail threading lookups (Message-ID headers, participants, subjects) and channel checkpoints.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::model::Attachment;

/// Conversations that hold a mail with this Message-ID header on the channel, newest first.
pub fn conversations_by_header(
    conn: &Connection,
    channel_id: &str,
    header_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT conversation_id FROM mail_ids WHERE channel_id = ?1 AND header_id = ?2 ORDER BY created_at DESC",
    )?;
    let rows = stmt.query_map([channel_id, header_id], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The message of `conversation_id` on the channel whose Message-ID header is `header_id` (not
/// one its mails only answered), the newest if several share it.
pub fn message_by_header(
    conn: &Connection,
    channel_id: &str,
    conversation_id: &str,
    header_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT message_id FROM mail_ids WHERE channel_id = ?1 AND header_id = ?2 AND conversation_id = ?3
             AND message_id NOT LIKE 'ref:%' ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )?
        .query_row([channel_id, header_id, conversation_id], |r| r.get(0))
        .optional()?)
}

/// Whether a mail on the channel has this Message-ID (or one of its mails answered it).
pub fn header_known(conn: &Connection, channel_id: &str, header_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM mail_ids WHERE channel_id = ?1 AND header_id = ?2 LIMIT 1")?
        .query_row([channel_id, header_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Conversations that hold mail about the calendar event `uid` on the channel, newest first.
pub fn conversations_by_calendar_uid(
    conn: &Connection,
    channel_id: &str,
    uid: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT conversation_id FROM calendar_uids WHERE channel_id = ?1 AND uid = ?2 ORDER BY updated_at DESC",
    )?;
    let rows = stmt.query_map([channel_id, uid], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that mail about the calendar event `uid` is in `conversation_id` (once per
/// conversation; the newest mail about it makes it the newest).
pub fn record_calendar_uid(
    conn: &Connection,
    channel_id: &str,
    uid: &str,
    conversation_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO calendar_uids (channel_id, uid, conversation_id, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (channel_id, uid, conversation_id) DO UPDATE SET updated_at = excluded.updated_at",
    )?
    .execute(params![channel_id, uid, conversation_id, now])?;
    Ok(())
}

/// Records that `header_id` belongs to `conversation_id`: the Message-ID of `message_id`, or,
/// with `message_id` = `ref:<id>`, one that message answered and no mail of the channel had.
pub fn record_header(
    conn: &Connection,
    channel_id: &str,
    header_id: &str,
    conversation_id: &str,
    message_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO mail_ids (channel_id, header_id, conversation_id, message_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![channel_id, header_id, conversation_id, message_id, now])?;
    Ok(())
}

/// The Message-ID headers of a conversation, oldest first (for References), at most `limit`
/// of the newest.
pub fn headers_of_conversation(
    conn: &Connection,
    conversation_id: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT header_id FROM (SELECT header_id, created_at, rowid FROM mail_ids WHERE conversation_id = ?1
                                ORDER BY created_at DESC, rowid DESC LIMIT ?2)
         ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map(params![conversation_id, limit as i64], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The Message-ID header of one of our messages, if it has one.
pub fn header_of_message(conn: &Connection, message_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT header_id FROM mail_ids WHERE message_id = ?1 LIMIT 1")?
        .query_row([message_id], |r| r.get(0))
        .optional()?)
}

pub fn add_participants(conn: &Connection, conversation_id: &str, identities: &[String]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO participants (conversation_id, identity) VALUES (?1, ?2)")?;
    for identity in identities {
        stmt.execute([conversation_id, identity])?;
    }
    Ok(())
}

pub fn is_participant(conn: &Connection, conversation_id: &str, identity: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM participants WHERE conversation_id = ?1 AND identity = ?2")?
        .query_row([conversation_id, identity], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The newest conversation of `contact_id` on the channel with this subject key, active since
/// `since` (ms).
pub fn conversation_by_subject(
    conn: &Connection,
    channel_id: &str,
    contact_id: &str,
    subject_key: &str,
    since: i64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM conversations WHERE channel_id = ?1 AND contact_id = ?2 AND subject_key = ?3
               AND coalesce(last_message_at, created_at) >= ?4
             ORDER BY coalesce(last_message_at, created_at) DESC LIMIT 1",
        )?
        .query_row(params![channel_id, contact_id, subject_key, since], |r| r.get(0))
        .optional()?)
}

pub fn checkpoint(conn: &Connection, channel_id: &str, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM channel_state WHERE channel_id = ?1 AND key = ?2")?
        .query_row([channel_id, key], |r| r.get(0))
        .optional()?)
}

pub fn set_checkpoint(conn: &Connection, channel_id: &str, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO channel_state (channel_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (channel_id, key) DO UPDATE SET value = excluded.value",
    )?
    .execute([channel_id, key, value])?;
    Ok(())
}

/// Our outbound message that carried this Message-ID header on the channel, with its
/// conversation (what a bounce reports on).
pub fn outbound_by_header(
    conn: &Connection,
    channel_id: &str,
    header_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT m.message_id, m.conversation_id FROM mail_ids m JOIN messages g ON g.id = m.message_id
             WHERE m.channel_id = ?1 AND m.header_id = ?2 AND g.direction = 'outbound' LIMIT 1",
        )?
        .query_row([channel_id, header_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Our outbound message `message_id` on the channel and its conversation: what a delivery
/// status notification's `Original-Envelope-Id` names (we send the message id as ENVID).
pub fn outbound_by_id(
    conn: &Connection,
    channel_id: &str,
    message_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, conversation_id FROM messages WHERE id = ?1 AND channel_id = ?2 AND direction = 'outbound'",
        )?
        .query_row([message_id, channel_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// What an inbound item was refused as: `remembered` decides the item (its dedup key) for good;
/// otherwise it was the moment that was refused (a sender limit), and the item offered again
/// is decided again.
pub struct Refusal<'a> {
    pub channel_id: &'a str,
    pub dedup_key: Option<&'a str>,
    pub remembered: bool,
    pub reason: &'a str,
    /// JSON for operators.
    pub summary: &'a str,
}

/// Records an inbound item refused with a reason.
pub fn reject(
    conn: &Connection,
    refusal: &Refusal<'_>,
    source: Option<&Attachment>,
    now: i64,
) -> Result<(), StoreError> {
    let Refusal { channel_id, dedup_key, remembered, reason, summary } = refusal;
    conn.prepare_cached(
        "INSERT INTO rejected_inbound (channel_id, dedup_key, remembered, reason, summary, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![channel_id, dedup_key, remembered, reason, summary, now])?;
    // The refused mail's kept source stays downloadable like a message's, under a message id
    // that names the refusal: what a heuristic refused can be read in full.
    if let Some(a) = source {
        super::messages::insert_file(conn, a, &format!("rejected:{}", conn.last_insert_rowid()))?;
    }
    Ok(())
}

/// One refused inbound item, for operators.
pub struct Rejected {
    pub id: u64,
    pub reason: String,
    /// JSON: from, subject, provider message id, and the kept source (an attachment) if any.
    pub summary: String,
    pub created_at: i64,
    /// The message it became when an operator took it in after all, and when (ms).
    pub accepted: Option<(String, i64)>,
}

const REJECTED_COLUMNS: &str = "rowid, reason, summary, created_at, accepted_message_id, accepted_at";

fn rejected_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rejected> {
    let accepted = match (r.get::<_, Option<String>>(4)?, r.get::<_, Option<i64>>(5)?) {
        (Some(message_id), Some(at)) => Some((message_id, at)),
        _ => None,
    };
    Ok(Rejected {
        id: r.get::<_, i64>(0)? as u64,
        reason: r.get(1)?,
        summary: r.get(2)?,
        created_at: r.get(3)?,
        accepted,
    })
}

/// Up to `limit` items refused on the channel after `after` (an id), oldest first.
pub fn rejected_list(
    conn: &Connection,
    channel_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Rejected>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REJECTED_COLUMNS} FROM rejected_inbound WHERE channel_id = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![channel_id, after as i64, limit as i64], rejected_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The item `id` the channel refused, if it refused one by that id.
pub fn rejected_item(conn: &Connection, channel_id: &str, id: u64) -> Result<Option<Rejected>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {REJECTED_COLUMNS} FROM rejected_inbound WHERE rowid = ?1 AND channel_id = ?2"
        ))?
        .query_row(params![id as i64, channel_id], rejected_row)
        .optional()?)
}

/// Records that the refused item `id` was taken in as `message_id` (the first time only: taking
/// it in again finds the same message).
pub fn mark_accepted(conn: &Connection, id: u64, message_id: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE rejected_inbound SET accepted_message_id = ?2, accepted_at = ?3
         WHERE rowid = ?1 AND accepted_message_id IS NULL",
    )?
    .execute(params![id as i64, message_id, now])?;
    Ok(())
}

/// The reason an item with this dedup key was rejected before for good, if it was.
pub fn rejected(conn: &Connection, channel_id: &str, dedup_key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT reason FROM rejected_inbound WHERE channel_id = ?1 AND dedup_key = ?2 AND remembered = 1 LIMIT 1",
        )?
        .query_row([channel_id, dedup_key], |r| r.get(0))
        .optional()?)
}

/// The `store_meta` key migration 8 writes: when it ran, if the store held mail then.
pub const SOURCE_KEYS_BEFORE: &str = "mail_source_keys_before";

/// When store migration 8 ran, if the store held mail then (`Store::mail_source_keys_before`).
pub fn source_keys_before(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(meta(conn, SOURCE_KEYS_BEFORE)?.and_then(|ms| ms.parse().ok()))
}

/// An item refused for the moment (not remembered) came in later as `message_id`: its refusals
/// name that message, as if an operator had taken it in.
pub fn settle_held_back(
    conn: &Connection,
    channel_id: &str,
    dedup_key: &str,
    message_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE rejected_inbound SET accepted_message_id = ?3, accepted_at = ?4
         WHERE channel_id = ?1 AND dedup_key = ?2 AND remembered = 0 AND accepted_message_id IS NULL",
    )?
    .execute(params![channel_id, dedup_key, message_id, now])?;
    Ok(())
}

/// An inbound mail stored under its whole source's hash (`sha256:…`, the dedup key before
/// migration 8), whose kept source is that very source: what can be re-keyed
/// (`pipeline::rekey`).
#[derive(Clone, Debug)]
pub struct SourceKeyed {
    pub rowid: i64,
    pub key: String,
    pub source_sha256: String,
    pub source_size: u64,
}

/// Where stored mail keeps its dedup key: inbound messages, and refusals (whose kept source is
/// in their summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedBy {
    Messages,
    Refusals,
}

impl KeyedBy {
    /// The `store_meta` key that remembers how far re-keying went.
    pub fn progress_key(self) -> &'static str {
        match self {
            KeyedBy::Messages => "mail_rekeyed_messages_through",
            KeyedBy::Refusals => "mail_rekeyed_refusals_through",
        }
    }
}

/// Up to `limit` mails of `table` after `after` (a rowid) still under their source key.
pub fn source_keyed(
    conn: &Connection,
    table: KeyedBy,
    after: i64,
    limit: usize,
) -> Result<Vec<SourceKeyed>, StoreError> {
    let sql = match table {
        KeyedBy::Messages => {
            "SELECT rowid, provider_message_id, json_extract(body, '$.source.sha256'), json_extract(body, '$.source.size')
             FROM messages WHERE rowid > ?1 AND direction = 'inbound' AND provider_message_id LIKE 'sha256:%'
               AND provider_message_id = 'sha256:' || json_extract(body, '$.source.sha256')
             ORDER BY rowid LIMIT ?2"
        }
        KeyedBy::Refusals => {
            "SELECT rowid, dedup_key, json_extract(summary, '$.source.sha256'), json_extract(summary, '$.source.size')
             FROM rejected_inbound WHERE rowid > ?1 AND dedup_key LIKE 'sha256:%'
               AND dedup_key = 'sha256:' || json_extract(summary, '$.source.sha256')
             ORDER BY rowid LIMIT ?2"
        }
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(SourceKeyed {
            rowid: r.get(0)?,
            key: r.get(1)?,
            source_sha256: r.get(2)?,
            source_size: r.get::<_, i64>(3)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores the mail at `rowid` under `key` instead of `before`. A message whose new key another
/// message of its channel holds already (the same mail stored twice while copies were told
/// apart by their bytes) keeps its old one: the first copy answers for both. Whether it was
/// re-keyed.
pub fn rekey(conn: &Connection, table: KeyedBy, rowid: i64, before: &str, key: &str) -> Result<bool, StoreError> {
    let sql = match table {
        KeyedBy::Messages => {
            "UPDATE OR IGNORE messages SET provider_message_id = ?3 WHERE rowid = ?1 AND provider_message_id = ?2"
        }
        KeyedBy::Refusals => "UPDATE rejected_inbound SET dedup_key = ?3 WHERE rowid = ?1 AND dedup_key = ?2",
    };
    Ok(conn.prepare_cached(sql)?.execute(params![rowid, before, key])? > 0)
}

/// A value of the store's own bookkeeping (`store_meta`).
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn.prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO store_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}
