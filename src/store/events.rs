//! The event log: append inside a write, read by `seq`.
//!
//! The envelope is composed on read from the stored columns, so the log holds each event's data
//! once and every reader (webhooks, `/v1/events`, SSE) produces the same bytes.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::StoreError;
use crate::model::event::EventFilter;
use crate::model::{time, AttachmentUrls, EventId, EventType};

/// One row of the log.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub ordering_key: String,
    pub created_at: i64,
    pub data: String,
}

impl StoredEvent {
    /// `{"id","seq","type","timestamp","data"}`, the public envelope, with attachment URLs
    /// under the current `server.public_url` (`Store::attachment_urls`).
    pub fn envelope_json(&self, urls: &AttachmentUrls) -> String {
        format!(
            r#"{{"id":"{}","seq":{},"type":"{}","timestamp":"{}","data":{}}}"#,
            self.id,
            self.seq,
            self.kind,
            time::rfc3339(self.created_at),
            urls.rebase_json(&self.data)
        )
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(StoredEvent {
            seq: row.get::<_, i64>(0)? as u64,
            id: row.get(1)?,
            kind: row.get(2)?,
            ordering_key: row.get(3)?,
            created_at: row.get(4)?,
            data: row.get(5)?,
        })
    }
}

const COLUMNS: &str = "seq, id, type, ordering_key, created_at, data";

/// Appends one event; `ordering_key` is the conversation (or contact) whose events must reach
/// each consumer in order.
pub fn append(
    conn: &Connection,
    kind: EventType,
    ordering_key: &str,
    data: &impl Serialize,
) -> Result<EventId, StoreError> {
    append_json(conn, kind, ordering_key, serde_json::to_string(data)?)
}

/// `append` for data already serialized to JSON.
pub fn append_json(
    conn: &Connection,
    kind: EventType,
    ordering_key: &str,
    data: String,
) -> Result<EventId, StoreError> {
    let id = EventId::new();
    conn.prepare_cached("INSERT INTO events (id, type, ordering_key, created_at, data) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id.as_str(), kind.as_str(), ordering_key, time::now_ms(), data])?;
    Ok(id)
}

/// Up to `limit` events with `seq > after`, in order.
pub fn after(conn: &Connection, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
    let rows = stmt.query_map(params![after as i64, limit as i64], StoredEvent::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `limit` events after `after` that `filter` takes. Scans at most `scan_limit` rows;
/// also returns the last seq scanned so a paging client skips the rest.
pub fn after_matching(
    conn: &Connection,
    after: u64,
    limit: usize,
    filter: &EventFilter,
    scan_limit: usize,
) -> Result<(Vec<StoredEvent>, u64), StoreError> {
    let mut out = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    while out.len() < limit && scanned < scan_limit {
        let chunk = self::after(conn, cursor, 500.min(scan_limit - scanned))?;
        if chunk.is_empty() {
            break;
        }
        scanned += chunk.len();
        for event in chunk {
            cursor = event.seq;
            if filter.takes(&event.kind, &event.data) {
                out.push(event);
                if out.len() == limit {
                    break;
                }
            }
        }
    }
    Ok((out, cursor))
}

pub fn by_seq(conn: &Connection, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))?;
    Ok(stmt.query_row([seq as i64], StoredEvent::from_row).optional()?)
}
