//! Contacts, their identities, and conversations.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;
use crate::model::{time, ChannelRef, Contact, ContactId, Conversation, ConversationId};

pub fn contact_by_identity(conn: &Connection, identity: &str) -> Result<Option<ContactId>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT contact_id FROM identities WHERE identity = ?1")?;
    Ok(stmt.query_row([identity], |r| r.get::<_, String>(0)).optional()?.map(ContactId::from_stored))
}

pub fn insert_contact(conn: &Connection, contact: &Contact, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO contacts (id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)")?
        .execute(params![contact.id.as_str(), contact.name, now])?;
    for identity in &contact.identities {
        conn.prepare_cached("INSERT INTO identities (identity, contact_id, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![identity, contact.id.as_str(), now])?;
    }
    Ok(())
}

pub fn contact(conn: &Connection, id: &str) -> Result<Option<Contact>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, name, created_at, updated_at FROM contacts WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
        })
        .optional()?;
    let Some((id, name, created, updated)) = row else { return Ok(None) };
    let mut stmt =
        conn.prepare_cached("SELECT identity FROM identities WHERE contact_id = ?1 ORDER BY created_at, identity")?;
    let identities = stmt.query_map([&id], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Contact {
        id: ContactId::from_stored(id),
        name,
        identities,
        created_at: time::rfc3339(created),
        updated_at: time::rfc3339(updated),
    }))
}

const COLUMNS: &str = "id, channel_id, channel_type, contact_id, thread_key, peer_address, subject, status, \
                       created_at, updated_at, last_message_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: ConversationId::from_stored(r.get(0)?),
        channel: ChannelRef { id: r.get(1)?, kind: r.get(2)? },
        contact_id: ContactId::from_stored(r.get(3)?),
        thread_key: r.get(4)?,
        peer_address: r.get(5)?,
        subject: r.get(6)?,
        status: r.get(7)?,
        created_at: time::rfc3339(r.get(8)?),
        updated_at: time::rfc3339(r.get(9)?),
        last_message_at: r.get::<_, Option<i64>>(10)?.map(time::rfc3339),
    })
}

pub fn by_thread(conn: &Connection, channel_id: &str, thread_key: &str) -> Result<Option<Conversation>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM conversations WHERE channel_id = ?1 AND thread_key = ?2"))?;
    Ok(stmt.query_row([channel_id, thread_key], from_row).optional()?)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Conversation>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM conversations WHERE id = ?1"))?;
    Ok(stmt.query_row([id], from_row).optional()?)
}

/// Inserts a conversation; `subject_key` is what a later mail on the same subject finds it by.
pub fn insert(conn: &Connection, c: &Conversation, now: i64, subject_key: Option<&str>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, channel_id, channel_type, contact_id, thread_key, peer_address, subject, status,
                                    created_at, updated_at, last_message_at, subject_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?10)",
    )?
    .execute(params![
        c.id.as_str(),
        c.channel.id,
        c.channel.kind,
        c.contact_id.as_str(),
        c.thread_key,
        c.peer_address,
        c.subject,
        c.status,
        now,
        subject_key
    ])?;
    Ok(())
}

/// Makes `subject_key` the one a later mail on the same subject finds the conversation by: a
/// thread renamed on the way (a customer's new subject, or ours on a reply) is found by its
/// current subject.
pub fn set_subject_key(conn: &Connection, id: &ConversationId, subject_key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE conversations SET subject_key = ?2 WHERE id = ?1 AND subject_key IS NOT ?2")?
        .execute(params![id.as_str(), subject_key])?;
    Ok(())
}

/// Records activity on a conversation (a message in or out).
pub fn touch(conn: &Connection, id: &ConversationId, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE conversations SET last_message_at = ?2 WHERE id = ?1")?
        .execute(params![id.as_str(), now])?;
    Ok(())
}

/// Sets `status` (`open`/`closed`); returns the updated conversation if it changed.
pub fn set_status(conn: &Connection, id: &str, status: &str, now: i64) -> Result<Option<Conversation>, StoreError> {
    let changed = conn
        .prepare_cached("UPDATE conversations SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status <> ?2")?
        .execute(params![id, status, now])?;
    if changed == 0 {
        return Ok(None);
    }
    get(conn, id)
}
