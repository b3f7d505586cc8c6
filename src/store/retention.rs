//! Retention: what `storage.retention` removes from the store, and how the disk space comes back.
//!
//! The store keeps everything until told otherwise. With a retention set, a prune (hourly, and
//! on `POST /v1/storage/prune`) removes what is older than it:
//! - The **content of messages**: text, HTML, `reply_text`, a mail's calendar event, attachments
//!   and kept sources (their rows, and each blob no other row refers to). The message row stays,
//!   with `pruned_at`, its ids, parties, subject, status and times: a reply still threads to it
//!   (the Message-ID index, calendar UIDs and participants stay), the same item fetched again (a UIDVALIDITY change, a provider
//!   retry) is still known by its dedup key, and a helpdesk asking for it learns that it was
//!   pruned rather than that it never existed. A message still waiting to be sent is left whole
//!   until a prune after it was sent.
//! - **Refused items** (`/v1/channels/{id}/rejected`) and their kept sources.
//! - The **event log's** oldest events, as a prefix: up to the newest `seq` older than the
//!   retention that every configured webhook consumer has fanned out and that no owed delivery
//!   of one still needs (dead letters older than the retention go first). The highest removed
//!   `seq` is kept (`events_pruned_through`): a pull cursor before it gets 410 and knows where
//!   to go on from.
//! - **Blobs** no attachment row refers to: those of the rows removed, and any that an
//!   interrupted prune or an older version left (a duplicate's files were indexed before).
//! - **Blob packs**: a pack nothing refers to any more is removed; one whose live blobs fill less
//!   than half of it is compacted (the live blobs copied into a new pack, the index moved in one
//!   transaction, the old file removed at the next prune, so that a download that looked it up
//!   just before can still open it; a start sweeps it too, as any unindexed pack). Blob files
//!   from before packs are left alone.
//!
//! Work goes in chunks of a few hundred rows, each its own transaction, so the writer is never
//! held for long, and a prune stopped midway has lost nothing: the next goes on from there.
//!
//! A batch that found a blob indexed before a prune removed it refers to it without packing it
//! again: `NewAttachments::write` checks such blobs inside the batch's transaction whenever a
//! prune removed any blob meanwhile, and fails the batch (read again, it packs them anew).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{blobs, Store, StoreError};
use crate::model::{time, Message};

/// Rows per transaction.
const CHUNK: usize = 500;
/// `store_meta` keys: the highest event `seq` removed, and the last message rowid looked at.
pub(super) const EVENTS_PRUNED_THROUGH: &str = "events_pruned_through";
const MESSAGES_PRUNED_THROUGH: &str = "messages_pruned_through_rowid";

/// What one prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Messages whose content was removed.
    pub messages: u64,
    pub rejected: u64,
    pub events: u64,
    /// The highest event `seq` removed so far (this prune's or an earlier one's).
    pub events_pruned_through: u64,
    /// Blobs no row refers to any more.
    pub blobs: u64,
    pub packs_removed: u64,
    pub packs_compacted: u64,
    /// Bytes of blob packs given back to the file system (the database file shrinks only as
    /// SQLite reuses its free pages).
    pub bytes_freed: u64,
    /// The configured webhook consumer whose fan-out cursor or owed deliveries kept old events
    /// (a consumer that is down, or disabled by a 410), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back_by: Option<String>,
}

/// Removes what was stored before `cutoff_ms` (see the module doc). `consumers`: the configured
/// webhook consumers, whose cursors and owed deliveries hold events back. `retired`: packs a
/// compaction left, removed at the next prune.
pub async fn prune(
    store: &Store,
    cutoff_ms: i64,
    consumers: Vec<String>,
    retired: &mut Vec<PathBuf>,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    for path in retired.drain(..) {
        pruned.bytes_freed += remove_file(&path);
    }
    pruned.messages = in_chunks(store, cutoff_ms, prune_messages).await?;
    pruned.rejected = in_chunks(store, cutoff_ms, prune_rejected).await?;
    let (blobs, unreferenced_packs) = unreference(store).await?;
    pruned.blobs = blobs;
    loop {
        let consumers = consumers.clone();
        let chunk = store.write(move |c| prune_events(c, cutoff_ms, &consumers)).await?;
        pruned.events += chunk.removed;
        store.inner.events_pruned_through.store(chunk.through, Ordering::SeqCst);
        (pruned.events_pruned_through, pruned.held_back_by) = (chunk.through, chunk.held_back_by);
        if !chunk.more {
            break;
        }
    }
    if !unreferenced_packs.is_empty() {
        reclaim_packs(store, unreferenced_packs, retired, &mut pruned).await?;
    }
    Ok(pruned)
}

/// What one chunk's transaction did.
struct Chunk {
    /// Messages or refused items pruned.
    rows: u64,
    /// Whether another chunk may follow.
    more: bool,
}

/// Runs `step` a chunk per transaction until it is done: how many rows in all. `S` is what one
/// chunk hands the next within this prune.
async fn in_chunks<S: Copy + Default + Send + 'static>(
    store: &Store,
    cutoff_ms: i64,
    step: fn(&Connection, i64, &mut S) -> Result<Chunk, StoreError>,
) -> Result<u64, StoreError> {
    let (mut rows, mut state) = (0, S::default());
    loop {
        let (chunk, next) = store
            .write(move |c| {
                let mut state = state;
                step(c, cutoff_ms, &mut state).map(|chunk| (chunk, state))
            })
            .await?;
        (rows, state) = (rows + chunk.rows, next);
        if !chunk.more {
            return Ok(rows);
        }
    }
}

/// Where a prune's pass over the messages is: the last rowid looked at (`None`: the first
/// chunk, which starts at the stored watermark), and whether a message still waiting to be
/// sent has held the stored watermark back.
#[derive(Clone, Copy, Default)]
struct MessagesPass {
    after: Option<i64>,
    held: bool,
}

/// One chunk of messages past the watermark: those older than `cutoff_ms` lose their content.
///
/// The stored watermark (where the next prune starts) stops before the first message still
/// waiting to be sent (a channel down longer than the retention, a gateway stopped for days):
/// the next prune looks at it again rather than leaving its content for ever. Those after it
/// are pruned meanwhile.
fn prune_messages(conn: &Connection, cutoff_ms: i64, pass: &mut MessagesPass) -> Result<Chunk, StoreError> {
    let from = match pass.after {
        Some(after) => after,
        None => meta(conn, MESSAGES_PRUNED_THROUGH)?.unwrap_or(0),
    };
    let rows: Vec<(i64, String, i64, String)> = conn
        .prepare_cached("SELECT rowid, id, created_at, body FROM messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2")?
        .query_map(params![from, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let full = rows.len() == CHUNK;
    let now = time::rfc3339(time::now_ms());
    let (mut through, mut count) = (from, 0);
    for (rowid, id, created_at, body) in rows {
        // Messages are stored in time order: the first one young enough ends the prefix.
        if created_at >= cutoff_ms {
            if !pass.held {
                set_meta(conn, MESSAGES_PRUNED_THROUGH, through)?;
            }
            return Ok(Chunk { rows: count, more: false });
        }
        let before = std::mem::replace(&mut through, rowid);
        pass.after = Some(rowid);
        let waiting: bool = conn.prepare_cached("SELECT 1 FROM outbound_jobs WHERE message_id = ?1")?.exists([&id])?;
        let mut message: Message = match serde_json::from_str(&body) {
            Ok(message) => message,
            Err(e) => {
                // A hand-edited row must not stop retention for good: it is passed over.
                tracing::warn!(message = %id, error = %e, "storage.retention: a stored message does not parse; left as it is");
                continue;
            }
        };
        if waiting && !pass.held {
            set_meta(conn, MESSAGES_PRUNED_THROUGH, before)?;
            pass.held = true;
        }
        if waiting || message.pruned_at.is_some() {
            continue;
        }
        let files: Vec<_> = std::mem::take(&mut message.attachments).into_iter().chain(message.source.take()).collect();
        for file in files {
            conn.prepare_cached("DELETE FROM attachments WHERE id = ?1")?.execute([file.id.as_str()])?;
        }
        message.text = None;
        message.html = None;
        message.reply_text = None;
        message.attachments_skipped.clear();
        // An invitation's event is its content too: who meets where, about what.
        message.calendar = None;
        message.pruned_at = Some(now.clone());
        conn.prepare_cached("UPDATE messages SET body = ?2 WHERE rowid = ?1")?
            .execute(params![rowid, serde_json::to_string(&message)?])?;
        count += 1;
    }
    if !pass.held {
        set_meta(conn, MESSAGES_PRUNED_THROUGH, through)?;
    }
    Ok(Chunk { rows: count, more: full })
}

/// One chunk of refused items older than `cutoff_ms`, with their kept sources.
fn prune_rejected(conn: &Connection, cutoff_ms: i64, _: &mut ()) -> Result<Chunk, StoreError> {
    let rows: Vec<(i64, String)> = conn
        .prepare_cached("SELECT rowid, summary FROM rejected_inbound WHERE created_at < ?1 LIMIT ?2")?
        .query_map(params![cutoff_ms, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (rowid, summary) in &rows {
        let summary: serde_json::Value = serde_json::from_str(summary).unwrap_or_default();
        if let Some(id) = summary["source"]["id"].as_str() {
            conn.prepare_cached("DELETE FROM attachments WHERE id = ?1")?.execute([id])?;
        }
        conn.prepare_cached("DELETE FROM rejected_inbound WHERE rowid = ?1")?.execute([rowid])?;
    }
    Ok(Chunk { rows: rows.len() as u64, more: rows.len() == CHUNK })
}

/// Removes the index rows of the blobs no attachment row refers to: those whose rows this
/// prune removed, and any an interrupted prune or an older version (a duplicate's files) left.
/// How many, and the packs they were in.
///
/// No index on `attachments(sha256)` serves this: one would cost every stored attachment a
/// B-tree insert for an hourly question. So one read snapshot, off the writer, lists the
/// indexed blobs no row refers to and the highest attachment rowid then; the transaction that
/// removes index rows looks only at rows added since (a batch that reused one of the blobs
/// meanwhile). A batch committing after that transaction was told (`blobs_removed`) and
/// checks the blobs it reused (`NewAttachments::write`).
async fn unreference(store: &Store) -> Result<(u64, BTreeSet<String>), StoreError> {
    let (candidates, seen_through) = store
        .read(|c| {
            // One snapshot for both questions.
            c.execute_batch("BEGIN")?;
            let read = (|| {
                let seen_through: i64 =
                    c.query_row("SELECT coalesce(max(rowid), 0) FROM attachments", [], |r| r.get(0))?;
                let candidates = c
                    .prepare("SELECT sha256 FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM attachments)")?
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, StoreError>((candidates, seen_through))
            })();
            // A pooled connection must not keep its snapshot.
            if let Err(e) = c.execute_batch("COMMIT") {
                c.execute_batch("ROLLBACK")?;
                return Err(e.into());
            }
            read
        })
        .await?;
    let (mut count, mut packs) = (0, BTreeSet::new());
    for chunk in candidates.chunks(CHUNK) {
        let chunk = chunk.to_vec();
        let removed = store.inner.blobs_removed.clone();
        let (gone, in_packs) = store
            .write(move |c| {
                let mut since = c.prepare_cached("SELECT sha256 FROM attachments WHERE rowid > ?1")?;
                let referred_since = since
                    .query_map([seen_through], |r| r.get::<_, String>(0))?
                    .collect::<Result<std::collections::HashSet<_>, _>>()?;
                let mut packs = Vec::new();
                for sha in chunk.iter().filter(|sha| !referred_since.contains(*sha)) {
                    let pack: Option<String> = c
                        .prepare_cached("DELETE FROM blobs WHERE sha256 = ?1 RETURNING pack")?
                        .query_row([sha], |r| r.get(0))
                        .optional()?;
                    packs.extend(pack);
                }
                // Inside the transaction: a batch in the same or a later one sees it.
                if !packs.is_empty() {
                    removed.fetch_add(1, Ordering::SeqCst);
                }
                Ok((packs.len() as u64, packs))
            })
            .await?;
        count += gone;
        packs.extend(in_packs);
    }
    Ok((count, packs))
}

/// What one chunk of the event log's prefix did.
struct EventsChunk {
    removed: u64,
    /// The highest `seq` removed so far.
    through: u64,
    /// The consumer that kept old events, if one did.
    held_back_by: Option<String>,
    more: bool,
}

/// One chunk of the event log's prefix.
fn prune_events(conn: &Connection, cutoff_ms: i64, consumers: &[String]) -> Result<EventsChunk, StoreError> {
    let through = meta(conn, EVENTS_PRUNED_THROUGH)?.unwrap_or(0) as u64;
    // Dead letters older than the retention have had their time.
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE state = 'dead' AND created_at < ?1")?
        .execute([cutoff_ms])?;
    // What the configured consumers still need: everything after their fan-out cursor, and
    // each event they are still owed.
    let (mut horizon, mut holder) = (u64::MAX, None);
    for consumer in consumers {
        let scan: Option<i64> = conn
            .prepare_cached("SELECT scan_seq FROM webhook_consumers WHERE id = ?1")?
            .query_row([consumer], |r| r.get(0))
            .optional()?;
        let owed: Option<i64> = conn
            .prepare_cached("SELECT min(seq) FROM webhook_deliveries WHERE consumer_id = ?1")?
            .query_row([consumer], |r| r.get(0))?;
        let needs_after = (scan.unwrap_or(0) as u64).min(owed.map_or(u64::MAX, |s| (s as u64).saturating_sub(1)));
        if needs_after < horizon {
            (horizon, holder) = (needs_after, Some(consumer.clone()));
        }
    }
    // The old prefix, a chunk at a time (events are appended in time order).
    let old: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT seq, created_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
        .query_map(params![through as i64, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let young = old.iter().position(|(_, created_at)| *created_at >= cutoff_ms);
    let Some(last_old) = old[..young.unwrap_or(old.len())].last().map(|(seq, _)| *seq as u64) else {
        return Ok(EventsChunk { removed: 0, through, held_back_by: None, more: false });
    };
    let upto = last_old.min(horizon);
    let held_back_by = holder.filter(|_| horizon < last_old);
    if upto <= through {
        return Ok(EventsChunk { removed: 0, through, held_back_by, more: false });
    }
    let removed = conn
        .prepare_cached("DELETE FROM events WHERE seq > ?1 AND seq <= ?2")?
        .execute(params![through as i64, upto as i64])? as u64;
    // Consumers no longer configured keep their rows for when they come back; what they were
    // owed of the removed prefix cannot be sent any more, and their cursor moves past it.
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE seq <= ?1")?.execute([upto as i64])?;
    conn.prepare_cached("UPDATE webhook_consumers SET scan_seq = ?1 WHERE scan_seq < ?1")?.execute([upto as i64])?;
    set_meta(conn, EVENTS_PRUNED_THROUGH, upto as i64)?;
    let more = young.is_none() && old.len() == CHUNK && upto == last_old;
    Ok(EventsChunk { removed, through: upto, held_back_by, more })
}

/// Removes the packs among `packs` that hold no indexed blob, and compacts those whose indexed
/// blobs fill less than half of them.
async fn reclaim_packs(
    store: &Store,
    packs: BTreeSet<String>,
    retired: &mut Vec<PathBuf>,
    pruned: &mut Pruned,
) -> Result<(), StoreError> {
    let asked = packs.clone();
    let live: HashMap<String, Vec<(String, blobs::Location)>> = store
        .read(move |c| {
            let mut live: HashMap<String, Vec<_>> = HashMap::new();
            let mut stmt = c.prepare("SELECT sha256, pack, offset, size FROM blobs")?;
            let rows = stmt.query_map([], |r| {
                let location = blobs::Location {
                    pack: r.get(1)?,
                    offset: r.get::<_, i64>(2)? as u64,
                    size: r.get::<_, i64>(3)? as u64,
                };
                Ok((r.get::<_, String>(0)?, location))
            })?;
            for row in rows {
                let (sha, location) = row?;
                if asked.contains(&location.pack) {
                    live.entry(location.pack.clone()).or_default().push((sha, location));
                }
            }
            Ok(live)
        })
        .await?;
    let files = store.blobs().clone();
    for pack in packs {
        let path = files.pack_path(&pack);
        let Ok(size) = std::fs::metadata(&path).map(|m| m.len()) else { continue };
        match live.get(&pack) {
            None => {
                pruned.bytes_freed += remove_file(&path);
                pruned.packs_removed += 1;
            }
            Some(blobs) if blobs.iter().map(|(_, l)| l.size).sum::<u64>() * 2 < size => {
                compact(store, &pack, blobs.clone()).await?;
                retired.push(path);
                pruned.packs_compacted += 1;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Copies the live `blobs` of `pack` into a new pack and moves their index rows to it.
async fn compact(store: &Store, pack: &str, blobs: Vec<(String, blobs::Location)>) -> Result<(), StoreError> {
    let files = store.blobs().clone();
    let packed = tokio::task::spawn_blocking(move || {
        let mut copies = Vec::with_capacity(blobs.len());
        for (sha, location) in blobs {
            let bytes = files.file(&sha, Some(location), 0).read_blocking()?;
            copies.push((sha, bytes::Bytes::from(bytes)));
        }
        files.write_pack(&copies)
    })
    .await
    .map_err(|_| StoreError::Closed)??;
    let old = pack.to_owned();
    let moved = packed.clone();
    let result = store
        .write(move |c| {
            let mut stmt =
                c.prepare_cached("UPDATE blobs SET pack = ?2, offset = ?3 WHERE sha256 = ?1 AND pack = ?4")?;
            for p in &moved {
                stmt.execute(params![p.sha256, p.location.pack, p.location.offset as i64, old])?;
            }
            Ok(())
        })
        .await;
    if result.is_err() {
        if let Some(new) = packed.first() {
            store.blobs().remove_pack(&new.location.pack);
        }
    }
    result
}

/// Removes `path`; the bytes it held, or 0 if it could not be removed.
fn remove_file(path: &std::path::Path) -> u64 {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match std::fs::remove_file(path) {
        Ok(()) => size,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a blob pack retention freed; the next start removes it");
            0
        }
    }
}

/// A number of retention's own in `store_meta`.
fn meta(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(super::mail::meta(conn, key)?.and_then(|v| v.parse().ok()))
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    super::mail::set_meta(conn, key, &value.to_string())
}

/// The highest event `seq` retention removed, as stored (read when the store opens).
pub(super) fn events_pruned_through(conn: &Connection) -> Result<u64, StoreError> {
    Ok(meta(conn, EVENTS_PRUNED_THROUGH)?.unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose log holds `n` events written an hour ago.
    async fn store_with_old_events(dir: &std::path::Path, n: i64) -> Store {
        let store = Store::open(dir).unwrap();
        store
            .write(move |c| {
                for seq in 1..=n {
                    c.execute(
                        "INSERT INTO events (id, type, ordering_key, created_at, data) VALUES (?1, 'message.received', 'cnv_1', ?2, '{}')",
                        params![format!("evt_{seq}"), time::now_ms() - 3_600_000],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        store
    }

    fn consumer(c: &Connection, id: &str, scan_seq: i64, owed: &[i64]) -> Result<(), StoreError> {
        c.execute("INSERT INTO webhook_consumers (id, scan_seq) VALUES (?1, ?2)", params![id, scan_seq])?;
        for seq in owed {
            c.execute(
                "INSERT INTO webhook_deliveries (consumer_id, seq, event_id, ordering_key, created_at, state, next_attempt_at)
                 VALUES (?1, ?2, 'evt', 'cnv_1', ?3, 'pending', 0)",
                params![id, seq, time::now_ms()],
            )?;
        }
        Ok(())
    }

    /// Old events go as a prefix, held back by each configured consumer's fan-out cursor and by
    /// every delivery it is still owed; a consumer no longer configured holds nothing back, and
    /// its cursor moves past what went.
    #[tokio::test]
    async fn events_go_as_a_prefix_that_configured_consumers_no_longer_need() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_old_events(dir.path(), 10).await;
        store
            .write(|c| {
                consumer(c, "caught-up", 10, &[])?;
                consumer(c, "owed", 8, &[5, 7])?;
                consumer(c, "removed", 1, &[2])
            })
            .await
            .unwrap();
        let configured = vec!["caught-up".to_owned(), "owed".to_owned()];
        let now = time::now_ms();
        let pruned = prune(&store, now, configured.clone(), &mut Vec::new()).await.unwrap();
        assert_eq!((pruned.events, pruned.events_pruned_through), (4, 4), "event 5 is still owed");
        assert_eq!(pruned.held_back_by.as_deref(), Some("owed"));
        assert_eq!(store.events_pruned_through(), 4);
        let removed = store
            .read(|c| {
                let scan: i64 =
                    c.query_row("SELECT scan_seq FROM webhook_consumers WHERE id = 'removed'", [], |r| r.get(0))?;
                let owed: i64 =
                    c.query_row("SELECT count(*) FROM webhook_deliveries WHERE consumer_id = 'removed'", [], |r| {
                        r.get(0)
                    })?;
                Ok((scan, owed))
            })
            .await
            .unwrap();
        assert_eq!(removed, (4, 0));

        store.write(|c| Ok(c.execute("DELETE FROM webhook_deliveries WHERE consumer_id = 'owed'", [])?)).await.unwrap();
        let pruned = prune(&store, now, configured, &mut Vec::new()).await.unwrap();
        assert_eq!((pruned.events, pruned.events_pruned_through), (4, 8), "up to the cursor of `owed`");
        // Nothing younger than the cutoff goes, whoever has fanned it out.
        let pruned = prune(&store, now - 7_200_000, Vec::new(), &mut Vec::new()).await.unwrap();
        assert_eq!((pruned.events, pruned.events_pruned_through, pruned.held_back_by), (0, 8, None));
        store.close();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.events_pruned_through(), 8, "kept across a restart");
        store.close();
    }

    /// Old messages over several chunks, the fifth still waiting to be sent: every other one is
    /// pruned in one prune that ends, and the watermark stays before the waiting one, so the
    /// prune after it was sent prunes it too.
    #[tokio::test]
    async fn a_message_waiting_to_be_sent_holds_the_watermark_not_the_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let count = CHUNK as i64 * 2 + 10;
        store
            .write(move |c| {
                let old = time::now_ms() - 3_600_000;
                c.execute("INSERT INTO contacts (id, created_at, updated_at) VALUES ('ct_1', 0, 0)", [])?;
                c.execute(
                    "INSERT INTO conversations (id, channel_id, channel_type, thread_key, contact_id, peer_address, status, created_at, updated_at)
                     VALUES ('cnv_1', 'web', 'api', 'k', 'ct_1', 'ann', 'open', 0, 0)",
                    [],
                )?;
                for n in 1..=count {
                    let body = serde_json::json!({
                        "id": format!("msg_{n}"), "conversation_id": "cnv_1", "contact_id": "ct_1",
                        "channel": {"id": "web", "type": "api"}, "direction": "outbound", "status": "sent",
                        "from": {"address": "us"}, "to": [], "subject": null, "text": "hello", "html": null,
                        "reply_text": null, "attachments": [], "in_reply_to": null,
                        "provider": {"message_id": null, "thread_id": null}, "created_at": time::rfc3339(old),
                        "calendar": {"sequence": 0, "summary": "Call about the order"},
                    });
                    c.execute(
                        "INSERT INTO messages (id, conversation_id, channel_id, direction, status, created_at, body)
                         VALUES (?1, 'cnv_1', 'web', 'outbound', 'sent', ?2, ?3)",
                        params![format!("msg_{n}"), old, body.to_string()],
                    )?;
                }
                c.execute("INSERT INTO outbound_jobs (message_id, channel_id, recipient, due_at) VALUES ('msg_5', 'web', 'ann', 0)", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let now = time::now_ms();
        let pruned = prune(&store, now, Vec::new(), &mut Vec::new()).await.unwrap();
        assert_eq!(pruned.messages, count as u64 - 1);
        let message = |id: &'static str| {
            store.read(move |c| {
                let body: String = c.query_row("SELECT body FROM messages WHERE id = ?1", [id], |r| r.get(0))?;
                Ok(serde_json::from_str::<Message>(&body).unwrap())
            })
        };
        let text = |id: &'static str| async move { message(id).await.map(|m| m.text) };
        assert_eq!(text("msg_5").await.unwrap().as_deref(), Some("hello"), "waiting: left whole");
        assert!(message("msg_5").await.unwrap().calendar.is_some(), "waiting: its invitation too");
        let pruned_one = message("msg_1").await.unwrap();
        assert_eq!((pruned_one.text, pruned_one.calendar), (None, None), "the content, the invitation with it");
        assert_eq!(store.read(|c| meta(c, MESSAGES_PRUNED_THROUGH)).await.unwrap(), Some(4));

        store.write(|c| Ok(c.execute("DELETE FROM outbound_jobs", [])?)).await.unwrap();
        let pruned = prune(&store, now, Vec::new(), &mut Vec::new()).await.unwrap();
        assert_eq!(pruned.messages, 1, "sent since: pruned now");
        assert_eq!(text("msg_5").await.unwrap(), None);
        assert_eq!(store.read(|c| meta(c, MESSAGES_PRUNED_THROUGH)).await.unwrap(), Some(count));
        store.close();
    }

    /// A blob left indexed with nothing referring to it (an older version indexed a duplicate's
    /// files; a prune stopped midway) goes at the next prune, whatever its age; a referenced
    /// one in the same pack stays readable, and the pack, mostly live, is left as it is.
    #[tokio::test]
    async fn a_blob_nothing_refers_to_goes_and_a_referenced_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = bytes::Bytes::from_static(b"an invoice");
        let stored =
            store.put_blobs(vec![(kept.clone(), None), (bytes::Bytes::from_static(b"x"), None)]).await.unwrap();
        let kept_sha = stored.names[0].clone();
        let written = store.new_attachments(stored);
        store
            .write(move |c| {
                c.execute(
                    "INSERT INTO attachments (id, message_id, filename, content_type, size, sha256)
                     VALUES ('att_1', 'msg_1', 'invoice.pdf', 'application/pdf', 10, ?1)",
                    [&kept_sha],
                )?;
                written.write(c, None)
            })
            .await
            .unwrap();
        let pruned = prune(&store, 0, Vec::new(), &mut Vec::new()).await.unwrap();
        assert_eq!((pruned.blobs, pruned.packs_removed, pruned.packs_compacted), (1, 0, 0), "{pruned:?}");
        let file = store.blob_file(&crate::store::Blobs::hash(&kept), 10).await.unwrap();
        assert_eq!(file.read().await.unwrap(), kept.to_vec());
        store.close();
    }

    /// A batch found a blob indexed and refers to it without packing it again; a prune removes
    /// that blob before the batch commits. The batch fails instead of storing a reference to
    /// nothing, and prepared again it packs the blob anew.
    #[tokio::test]
    async fn a_batch_referring_to_a_blob_a_prune_removed_meanwhile_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logo = bytes::Bytes::from_static(b"a logo");
        let first = store.put_blobs(vec![(logo.clone(), None)]).await.unwrap();
        let written = store.new_attachments(first);
        store.write(move |c| written.write(c, None)).await.unwrap();
        let second = store.put_blobs(vec![(logo.clone(), None)]).await.unwrap();
        assert_eq!((second.packed.len(), second.reused.len()), (0, 1), "found indexed: not packed again");
        let reusing = store.new_attachments(second);

        assert_eq!(unreference(&store).await.unwrap().0, 1, "the logo, which no row refers to");
        let failed = store.write(move |c| reusing.write(c, None)).await;
        assert!(matches!(&failed, Err(StoreError::Stale(why)) if why.contains("removed by retention")), "{failed:?}");
        let again = store.put_blobs(vec![(logo, None)]).await.unwrap();
        assert_eq!(again.packed.len(), 1, "packed anew");
        store.close();
    }
}
