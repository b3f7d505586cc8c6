//! Messages and their attachments. The message object is stored whole as JSON; the columns beside
//! it exist for lookups (dedup, conversation listing, status).

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::model::{Attachment, ConversationId, Message, MessageId};

/// The message an inbound dedup key already produced on this channel, if any.
pub fn inbound_by_dedup_key(
    conn: &Connection,
    channel_id: &str,
    dedup_key: &str,
) -> Result<Option<(MessageId, ConversationId)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, conversation_id FROM messages
         WHERE channel_id = ?1 AND provider_message_id = ?2 AND direction = 'inbound'",
    )?;
    Ok(stmt
        .query_row([channel_id, dedup_key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .optional()?
        .map(|(m, c)| (MessageId::from_stored(m), ConversationId::from_stored(c))))
}

/// Inserts a message; `dedup_key` is what a later duplicate of an inbound item is found by.
/// Returns the message's JSON as stored (what its event carries).
pub fn insert(conn: &Connection, m: &Message, created_at: i64, dedup_key: Option<&str>) -> Result<String, StoreError> {
    let body = serde_json::to_string(m)?;
    conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, channel_id, direction, status, provider_message_id, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        m.id.as_str(),
        m.conversation_id.as_str(),
        m.channel.id,
        m.direction.as_str(),
        m.status.as_str(),
        dedup_key,
        created_at,
        body
    ])?;
    // The kept source is downloadable like an attachment, so it has a row like one.
    for a in m.attachments.iter().chain(&m.source) {
        insert_file(conn, a, m.id.as_str())?;
    }
    Ok(body)
}

/// Makes `a` downloadable (`GET /v1/attachments/{id}`, read by `attachment`) as a file of
/// `owner`: a message id, or `rejected:<rowid>` for a refused mail's source.
pub fn insert_file(conn: &Connection, a: &Attachment, owner: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attachments (id, message_id, filename, content_type, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![a.id.as_str(), owner, a.filename, a.content_type, a.size as i64, a.sha256])?;
    Ok(())
}

/// Rewrites a message after a status change.
pub fn update(conn: &Connection, m: &Message) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE messages SET status = ?2, provider_message_id = ?3, body = ?4 WHERE id = ?1")?
        .execute(params![m.id.as_str(), m.status.as_str(), m.provider.message_id, serde_json::to_string(m)?])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Message>, StoreError> {
    let body: Option<String> =
        conn.prepare_cached("SELECT body FROM messages WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
    body.map(|b| serde_json::from_str(&b).map_err(StoreError::from)).transpose()
}

/// The message a reply on the conversation answers: `named` when given (and of the
/// conversation), else the newest a person sent into it (automatic replies and bounces are not
/// what a reply answers).
pub fn answered(conn: &Connection, conversation_id: &str, named: Option<&str>) -> Result<Option<Message>, StoreError> {
    let body: Option<String> = match named {
        Some(id) => conn
            .prepare_cached("SELECT body FROM messages WHERE id = ?1 AND conversation_id = ?2")?
            .query_row([id, conversation_id], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let body = match body {
        Some(body) => Some(body),
        None => conn
            .prepare_cached(
                "SELECT body FROM messages
                 WHERE conversation_id = ?1 AND direction = 'inbound'
                   AND coalesce(json_extract(body, '$.auto_reply'), 0) = 0
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )?
            .query_row([conversation_id], |r| r.get(0))
            .optional()?,
    };
    body.map(|b| serde_json::from_str(&b).map_err(StoreError::from)).transpose()
}

/// Which of one contact's messages on a channel `contact_messages_since` counts.
#[derive(Clone, Copy, Debug)]
pub enum ContactMessages {
    /// Automatic messages (`auto_reply`) we accepted for them, in any of their conversations:
    /// a loop hops threads, so it is counted per contact.
    AutomaticSent,
    /// Messages they brought in that also reached their provider since then (`received_at`: a
    /// mail's INTERNALDATE): what a flood is made of, not a backlog of older mail imported now.
    ArrivedInbound,
}

/// How many of `which` messages in `contact_id`'s conversations on the channel were stored
/// since `since_ms`.
pub fn contact_messages_since(
    conn: &Connection,
    channel_id: &str,
    contact_id: &str,
    which: ContactMessages,
    since_ms: i64,
) -> Result<u32, StoreError> {
    // ArrivedInbound compares a JSON timestamp: ?4 is the same moment as RFC 3339 text, which
    // sorts by time.
    let since_text = crate::model::time::rfc3339(since_ms);
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&contact_id, &channel_id, &since_ms];
    let which_sql = match which {
        ContactMessages::AutomaticSent => "m.direction = 'outbound' AND json_extract(m.body, '$.auto_reply') = 1",
        ContactMessages::ArrivedInbound => {
            params.push(&since_text);
            "m.direction = 'inbound' AND coalesce(json_extract(m.body, '$.received_at') >= ?4, 1)"
        }
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT count(*) FROM conversations c JOIN messages m ON m.conversation_id = c.id
         WHERE c.contact_id = ?1 AND c.channel_id = ?2 AND m.created_at >= ?3 AND {which_sql}"
    ))?;
    Ok(stmt.query_row(params.as_slice(), |r| r.get(0))?)
}

/// Up to `limit` messages of a conversation in order, after message `after` when given.
pub fn for_conversation(
    conn: &Connection,
    conversation_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM messages WHERE conversation_id = ?1
           AND (?2 IS NULL OR (created_at, id) > (SELECT created_at, id FROM messages WHERE id = ?2))
         ORDER BY created_at, id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![conversation_id, after, limit as i64], |r| r.get::<_, String>(0))?;
    rows.map(|b| Ok(serde_json::from_str(&b?)?)).collect()
}

/// A stored file that can be downloaded (`GET /v1/attachments/{id}`): an attachment, a
/// message's kept source, or the kept source of a refused mail.
pub struct StoredFile {
    pub id: String,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

pub fn attachment(conn: &Connection, id: &str) -> Result<Option<StoredFile>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, filename, content_type, size, sha256 FROM attachments WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(StoredFile {
                id: r.get(0)?,
                filename: r.get(1)?,
                content_type: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                sha256: r.get(4)?,
            })
        })
        .optional()?)
}

/// The `store_meta` key of the `server.public_url`s the store has known (a JSON array).
const PUBLIC_URLS: &str = "public_urls";
/// How many former `public_url`s are remembered.
const MAX_PUBLIC_URLS: usize = 32;

/// The `server.public_url`s attachment URLs in this store were built under, other than
/// `current`, which is remembered from now on. A store from before they were remembered gives
/// the base of its newest attachment URL (looked for among its last 10,000 messages).
pub fn former_public_urls(conn: &Connection, current: &str) -> Result<Vec<String>, StoreError> {
    let current = current.trim_end_matches('/').to_owned();
    let mut known: Vec<String> = match super::mail::meta(conn, PUBLIC_URLS)? {
        Some(list) => serde_json::from_str(&list)?,
        None => newest_attachment_base(conn)?.into_iter().collect(),
    };
    if known.last() != Some(&current) {
        known.retain(|k| *k != current);
        known.push(current.clone());
        let excess = known.len().saturating_sub(MAX_PUBLIC_URLS + 1);
        known.drain(..excess);
        super::mail::set_meta(conn, PUBLIC_URLS, &serde_json::to_string(&known)?)?;
    }
    Ok(known.into_iter().filter(|k| *k != current).collect())
}

fn newest_attachment_base(conn: &Connection) -> Result<Option<String>, StoreError> {
    const PATH: &str = "/v1/attachments/att_";
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM messages WHERE rowid > (SELECT max(rowid) - 10000 FROM messages)
             AND body LIKE '%\"url\":\"%/v1/attachments/att_%' ORDER BY rowid DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(body.and_then(|body| {
        body.split("\"url\":\"").skip(1).find_map(|rest| {
            let url = rest.split_once('"')?.0;
            url.find(PATH).map(|at| url[..at].to_owned())
        })
    }))
}
