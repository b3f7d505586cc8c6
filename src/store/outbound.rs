//! Outbound send jobs and idempotency keys.
//!
//! A job row exists while a message waits to be sent; it carries only ids and retry state (the
//! payload is the message itself). Workers never hold a job while waiting: a rate-limited or
//! failed job gets a later `due_at` and goes back to the table.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub message_id: String,
    pub channel_id: String,
    pub recipient: String,
    pub attempts: u32,
    pub due_at: i64,
}

pub fn insert_job(conn: &Connection, job: &Job) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbound_jobs (message_id, channel_id, recipient, attempts, due_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![job.message_id, job.channel_id, job.recipient, job.attempts, job.due_at])?;
    Ok(())
}

/// Jobs due at `now`, earliest first.
pub fn due(conn: &Connection, now: i64, limit: usize) -> Result<Vec<Job>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, channel_id, recipient, attempts, due_at FROM outbound_jobs
         WHERE due_at <= ?1 ORDER BY due_at, message_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok(Job {
            message_id: r.get(0)?,
            channel_id: r.get(1)?,
            recipient: r.get(2)?,
            attempts: r.get(3)?,
            due_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The earliest `due_at` of any job, to sleep until.
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row("SELECT min(due_at) FROM outbound_jobs", [], |r| r.get(0))?)
}

pub fn reschedule(
    conn: &Connection,
    message_id: &str,
    due_at: i64,
    attempts: u32,
    last_error: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE outbound_jobs SET due_at = ?2, attempts = ?3, last_error = coalesce(?4, last_error) WHERE message_id = ?1",
    )?
    .execute(params![message_id, due_at, attempts, last_error])?;
    Ok(())
}

/// Makes every waiting job of these channels due at `now` (a reload changed them).
pub fn make_due(conn: &Connection, channel_ids: &[String], now: i64) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("UPDATE outbound_jobs SET due_at = ?2 WHERE channel_id = ?1 AND due_at > ?2")?;
    for id in channel_ids {
        stmt.execute(params![id, now])?;
    }
    Ok(())
}

/// Ends a message's job, with what its channel's adapter kept of how far the sends got
/// (`send_progress_key`), in the same transaction. Returns whether the job still existed
/// (false: someone else finished it).
pub fn finish(conn: &Connection, channel_id: &str, message_id: &str) -> Result<bool, StoreError> {
    let prefix = send_progress_key(message_id, "");
    // Every key with the prefix: those below the prefix with its last character ('/') raised.
    let end = format!("{}0", &prefix[..prefix.len() - 1]);
    conn.prepare_cached("DELETE FROM channel_state WHERE channel_id = ?1 AND key >= ?2 AND key < ?3")?
        .execute([channel_id, &prefix, &end])?;
    Ok(conn.prepare_cached("DELETE FROM outbound_jobs WHERE message_id = ?1")?.execute([message_id])? > 0)
}

/// The `channel_state` key under which an adapter keeps `what` of a message it is sending and
/// may send again (mail: which Bcc copies a server took): forgotten when the message's job ends,
/// sent or failed, so nothing is left behind by a message that gave up.
pub fn send_progress_key(message_id: &str, what: &str) -> String {
    format!("sending/{message_id}/{what}")
}

/// A stored response for an `Idempotency-Key`.
#[derive(Clone, Debug)]
pub struct IdempotentResponse {
    pub request_sha256: String,
    pub status: u16,
    pub body: String,
}

pub fn idempotent_response(
    conn: &Connection,
    token: &str,
    key: &str,
) -> Result<Option<IdempotentResponse>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT request_sha256, status, response FROM idempotency_keys WHERE token_name = ?1 AND key = ?2",
        )?
        .query_row([token, key], |r| {
            Ok(IdempotentResponse { request_sha256: r.get(0)?, status: r.get(1)?, body: r.get(2)? })
        })
        .optional()?)
}

pub fn save_idempotent(
    conn: &Connection,
    token: &str,
    key: &str,
    response: &IdempotentResponse,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (token_name, key, request_sha256, status, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![token, key, response.request_sha256, response.status, response.body, now])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{finish, send_progress_key};
    use crate::store::mail::{checkpoint, set_checkpoint};

    #[test]
    fn finishing_a_job_forgets_its_send_progress_and_only_its_own() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let keys = [
            ("support", send_progress_key("msg_1", "bcc-copies-taken")),
            ("support", send_progress_key("msg_1", "other")),
            // msg_1's keys are a prefix of these, and sort just after them.
            ("support", send_progress_key("msg_10", "bcc-copies-taken")),
            ("support", send_progress_key("msg_1.", "x")),
            ("other", send_progress_key("msg_1", "bcc-copies-taken")),
            ("support", "imap/INBOX".to_owned()),
        ];
        for (channel, key) in &keys {
            set_checkpoint(&conn, channel, key, "kept").unwrap();
        }
        finish(&conn, "support", "msg_1").unwrap();
        let left: Vec<bool> = keys.iter().map(|(c, k)| checkpoint(&conn, c, k).unwrap().is_some()).collect();
        assert_eq!(left, [false, false, true, true, true, true]);
    }
}
