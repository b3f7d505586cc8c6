//! Webhook consumer state: the fan-out cursor and one row per event still owed to a consumer.
//!
//! A delivery row is inserted when the event is fanned out to the consumer and deleted when the
//! consumer acknowledged it; retry state and dead letters stay on the row. So after a crash a
//! consumer is owed exactly the rows present plus the events after its `scan_seq`.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerState {
    pub scan_seq: u64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub event_id: String,
    pub ordering_key: String,
    pub created_at: i64,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub dead: bool,
}

/// The consumer's state, creating it at `start_seq` on first sight.
pub fn ensure_consumer(conn: &Connection, id: &str, start_seq: u64) -> Result<ConsumerState, StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO webhook_consumers (id, scan_seq) VALUES (?1, ?2)",
        params![id, start_seq as i64],
    )?;
    Ok(consumer(conn, id)?.unwrap_or_default())
}

pub fn consumer(conn: &Connection, id: &str) -> Result<Option<ConsumerState>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT scan_seq, disabled_at, disabled_reason, last_error, last_error_at FROM webhook_consumers WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(ConsumerState {
                scan_seq: r.get::<_, i64>(0)? as u64,
                disabled_at: r.get(1)?,
                disabled_reason: r.get(2)?,
                last_error: r.get(3)?,
                last_error_at: r.get(4)?,
            })
        })
        .optional()?)
}

const COLUMNS: &str = "seq, event_id, ordering_key, created_at, attempts, next_attempt_at, last_error, state";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: r.get::<_, i64>(0)? as u64,
        event_id: r.get(1)?,
        ordering_key: r.get(2)?,
        created_at: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        last_error: r.get(6)?,
        dead: r.get::<_, String>(7)? == "dead",
    })
}

/// Every delivery still pending (not dead), in `seq` order.
pub fn pending(conn: &Connection, consumer: &str) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE consumer_id = ?1 AND state = 'pending' ORDER BY seq"
    ))?;
    let rows = stmt.query_map([consumer], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Dead letters in `seq` order, after `after_seq`.
pub fn dead_letters(
    conn: &Connection,
    consumer: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE consumer_id = ?1 AND state = 'dead' AND seq > ?2
         ORDER BY seq LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![consumer, after_seq as i64, limit as i64], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn dead_count(conn: &Connection, consumer: &str) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM webhook_deliveries WHERE consumer_id = ?1 AND state = 'dead'",
        [consumer],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Adds deliveries (new or replayed) and advances the fan-out cursor. A row that already exists
/// becomes pending again with a fresh schedule (a replayed dead letter); a pending one is untouched.
pub fn enqueue(
    conn: &Connection,
    consumer: &str,
    deliveries: &[Delivery],
    scan_seq: Option<u64>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO webhook_deliveries
             (consumer_id, seq, event_id, ordering_key, created_at, state, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6)
         ON CONFLICT (consumer_id, seq) DO UPDATE
             SET state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL
             WHERE state = 'dead'",
    )?;
    for d in deliveries {
        stmt.execute(params![consumer, d.seq as i64, d.event_id, d.ordering_key, d.created_at, d.next_attempt_at])?;
    }
    if let Some(seq) = scan_seq {
        conn.prepare_cached("UPDATE webhook_consumers SET scan_seq = max(scan_seq, ?2) WHERE id = ?1")?
            .execute(params![consumer, seq as i64])?;
    }
    Ok(())
}

/// What became of one attempt.
#[derive(Clone, Debug)]
pub enum AttemptRecord {
    Delivered { seq: u64 },
    Retry { seq: u64, attempts: u32, next_attempt_at: i64, error: String },
    Dead { seq: u64, attempts: u32, error: String },
}

pub fn record(conn: &Connection, consumer: &str, records: &[AttemptRecord]) -> Result<(), StoreError> {
    for r in records {
        match r {
            AttemptRecord::Delivered { seq } => {
                conn.prepare_cached("DELETE FROM webhook_deliveries WHERE consumer_id = ?1 AND seq = ?2")?
                    .execute(params![consumer, *seq as i64])?;
            }
            AttemptRecord::Retry { seq, attempts, next_attempt_at, error } => {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET attempts = ?3, next_attempt_at = ?4, last_error = ?5
                     WHERE consumer_id = ?1 AND seq = ?2",
                )?
                .execute(params![consumer, *seq as i64, attempts, next_attempt_at, error])?;
            }
            AttemptRecord::Dead { seq, attempts, error } => {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET state = 'dead', attempts = ?3, last_error = ?4
                     WHERE consumer_id = ?1 AND seq = ?2",
                )?
                .execute(params![consumer, *seq as i64, attempts, error])?;
            }
        }
    }
    Ok(())
}

/// Sets or clears the consumer's last error and disabled state.
pub fn set_status(
    conn: &Connection,
    consumer: &str,
    last_error: Option<(&str, i64)>,
    disabled: Option<Option<(&str, i64)>>,
) -> Result<(), StoreError> {
    if let Some((error, at)) = last_error {
        conn.prepare_cached("UPDATE webhook_consumers SET last_error = ?2, last_error_at = ?3 WHERE id = ?1")?
            .execute(params![consumer, error, at])?;
    }
    if let Some(disabled) = disabled {
        let (reason, at) = disabled.map_or((None, None), |(r, at)| (Some(r), Some(at)));
        conn.prepare_cached("UPDATE webhook_consumers SET disabled_reason = ?2, disabled_at = ?3 WHERE id = ?1")?
            .execute(params![consumer, reason, at])?;
    }
    Ok(())
}

/// Turns dead letters (all, or the listed event ids) back into pending deliveries due now.
pub fn revive(
    conn: &Connection,
    consumer: &str,
    event_ids: Option<&[String]>,
    now: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let dead = dead_letters(conn, consumer, 0, usize::MAX >> 1)?;
    let chosen: Vec<Delivery> = dead
        .into_iter()
        .filter(|d| event_ids.is_none_or(|ids| ids.iter().any(|id| id == &d.event_id)))
        .map(|d| Delivery { attempts: 0, next_attempt_at: now, last_error: None, dead: false, ..d })
        .collect();
    enqueue(conn, consumer, &chosen, None)?;
    Ok(chosen)
}
