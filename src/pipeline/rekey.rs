//! Mail stored before store migration 8, re-keyed by what its author wrote.
//!
//! Until then a mail was known by the hash of its whole source (`sha256:…`), which differs
//! between two deliveries of one mail (each adds its own trace fields). The ingest transaction
//! looks such mail up by that old key too (`commit::superseded_key`), which recognises the same
//! copy fetched again, but not a second delivery arriving after the upgrade: a mail To us and
//! Cc an alias forwarded here, one copy imported before the upgrade and the other after, would
//! show twice. So once, in the background after the store opens, every inbound message and
//! refusal still under its source key whose source was kept is read again and stored under its
//! current key (`email::dedup::MailKeys`; a mail without a Message-ID keeps its source key,
//! which is still its key). How far it got is kept in `store_meta`, so a restart goes on where
//! it stopped; a store that never held mail from before has nothing to do.

use tokio_util::sync::CancellationToken;

use crate::channels::email::dedup::MailKeys;
use crate::store::mail::{self, KeyedBy, SourceKeyed};
use crate::store::{Store, StoreError};

/// Mails read and re-keyed per transaction.
const BATCH: usize = 100;
/// `store_meta`: set when every table is done.
const DONE: &str = "mail_rekeyed_at";

/// Re-keys what needs it, until done or `stop`. Errors are logged: a mail left under its old
/// key is still found by it when fetched again.
pub async fn run(store: Store, stop: CancellationToken) {
    if store.mail_source_keys_before().is_none() {
        return;
    }
    match rekey_all(&store, &stop).await {
        Ok(None) => {}
        Ok(Some((rekeyed, kept))) => tracing::info!(
            rekeyed,
            kept,
            "mail stored before this version is now known by what its author wrote (kept: no Message-ID, or \
             stored twice already)"
        ),
        Err(e) if stop.is_cancelled() => tracing::debug!(error = %e, "re-keying stored mail stopped"),
        Err(e) => tracing::warn!(error = %e, "re-keying stored mail stopped; it goes on at the next start"),
    }
}

/// `None`: done before, or stopped; else how many mails took a new key and how many kept theirs.
async fn rekey_all(store: &Store, stop: &CancellationToken) -> Result<Option<(u64, u64)>, StoreError> {
    if store.read(|c| mail::meta(c, DONE)).await?.is_some() {
        return Ok(None);
    }
    tracing::info!("re-keying mail stored before this version by what its author wrote, in the background");
    let (mut rekeyed, mut kept) = (0, 0);
    for table in [KeyedBy::Messages, KeyedBy::Refusals] {
        let progress = table.progress_key();
        let mut after = store.read(move |c| mail::meta(c, progress)).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            let batch = store.read(move |c| mail::source_keyed(c, table, after, BATCH)).await?;
            let Some(last) = batch.last().map(|m| m.rowid) else { break };
            let read = batch.len() as u64;
            let mut changes = Vec::with_capacity(batch.len());
            for stored in batch {
                if let Some(key) = current_key(store, &stored).await {
                    changes.push((stored.rowid, stored.key, key));
                }
            }
            let changed = store
                .write(move |c| {
                    let mut changed = 0;
                    for (rowid, before, key) in &changes {
                        changed += u64::from(mail::rekey(c, table, *rowid, before, key)?);
                    }
                    mail::set_meta(c, progress, &last.to_string())?;
                    Ok(changed)
                })
                .await?;
            (rekeyed, kept) = (rekeyed + changed, kept + read - changed);
            after = last;
        }
    }
    let now = crate::model::time::now_ms().to_string();
    store.write(move |c| mail::set_meta(c, DONE, &now)).await?;
    Ok(Some((rekeyed, kept)))
}

/// The key `stored` has now, when it is not the one it is stored under; `None` also when its
/// source cannot be read (it keeps the old key, by which a re-fetch still finds it).
async fn current_key(store: &Store, stored: &SourceKeyed) -> Option<String> {
    let read = async {
        store.blob_file(&stored.source_sha256, stored.source_size).await?.read().await.map_err(StoreError::from)
    };
    match read.await {
        // Hashing a large mail is no work for the async threads.
        Ok(source) => {
            tokio::task::spawn_blocking(move || MailKeys::of(&source).dedup).await.ok().filter(|key| *key != stored.key)
        }
        Err(e) => {
            tracing::warn!(sha256 = %stored.source_sha256, error = %e, "a stored mail's source cannot be read; it keeps its old key");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blobs;
    use rusqlite::params;

    const MAIL: &str = "From: ann@example.org\r\nTo: support@example.com\r\nSubject: Order\r\n\
        Message-ID: <order@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nWhere is it?\r\n";
    const VACATION: &str = "From: carl@example.org\r\nTo: support@example.com\r\nSubject: Away\r\n\
        Message-ID: <away@example.org>\r\nAuto-Submitted: auto-replied\r\n\r\nBack on Monday.\r\n";

    /// What a version-7 store holds: each mail under `sha256:` of its kept source — two
    /// deliveries of one mail (stored twice, their bytes told apart), a mail without a
    /// Message-ID, and a refused vacation notice.
    async fn version_7_store(dir: &std::path::Path, sources: &[String]) {
        let store = Store::open(dir).unwrap();
        let stored = store.put_blobs(sources.iter().map(|s| (s.clone().into(), None)).collect()).await.unwrap();
        let sizes: Vec<usize> = sources.iter().map(String::len).collect();
        let (names, packed) = (stored.names, stored.packed);
        store
            .write(move |c| {
                blobs::index(c, &packed)?;
                mail::set_meta(c, mail::SOURCE_KEYS_BEFORE, "1")?;
                c.execute_batch(
                    "INSERT INTO contacts (id, created_at, updated_at) VALUES ('ct_1', 0, 0);
                     INSERT INTO conversations (id, channel_id, channel_type, thread_key, contact_id, peer_address,
                         status, created_at, updated_at) VALUES ('cnv_1', 'support', 'email', 't', 'ct_1', 'a', 'open', 0, 0);",
                )?;
                for i in 0..3 {
                    let body = serde_json::json!({"source": {"sha256": names[i], "size": sizes[i]}}).to_string();
                    c.execute(
                        "INSERT INTO messages (id, conversation_id, channel_id, direction, status, provider_message_id,
                             created_at, body) VALUES (?1, 'cnv_1', 'support', 'inbound', 'received', 'sha256:' || ?2, 0, ?3)",
                        params![format!("msg_{i}"), names[i], body],
                    )?;
                }
                let summary = serde_json::json!({"source": {"sha256": names[3], "size": sizes[3]}}).to_string();
                c.execute(
                    "INSERT INTO rejected_inbound (channel_id, dedup_key, reason, summary, created_at)
                     VALUES ('support', 'sha256:' || ?1, 'an automatic reply outside any conversation', ?2, 0)",
                    params![names[3], summary],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }

    #[tokio::test]
    async fn stored_mail_takes_the_key_of_what_its_author_wrote_once() {
        let dir = tempfile::tempdir().unwrap();
        let sources = [
            format!("Delivered-To: support@example.com\r\n{MAIL}"),
            format!("Delivered-To: sales@example.net\r\n{MAIL}"),
            "From: cron@example.org\r\nSubject: disk\r\n\r\nfull\r\n".to_owned(),
            format!("Delivered-To: support@example.com\r\n{VACATION}"),
        ];
        version_7_store(dir.path(), &sources).await;
        let store = Store::open(dir.path()).unwrap();
        let keys = |store: Store| async move {
            store
                .read(|c| {
                    let mut keys: Vec<String> = c
                        .prepare("SELECT provider_message_id FROM messages ORDER BY rowid")?
                        .query_map([], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    keys.push(c.query_row("SELECT dedup_key FROM rejected_inbound", [], |r| r.get(0))?);
                    Ok(keys)
                })
                .await
        };
        let before = keys(store.clone()).await.unwrap();
        run(store.clone(), CancellationToken::new()).await;
        let after = keys(store.clone()).await.unwrap();
        let current = |i: usize| MailKeys::of(sources[i].as_bytes()).dedup;
        assert!(current(0).starts_with("mail-sha256:") && current(0) == current(1));
        assert_eq!(after[0], current(0), "the first copy is known by what its author wrote");
        assert_eq!(after[1], before[1], "the second copy keeps its key: the first answers for both");
        assert_eq!(after[2], before[2], "no Message-ID: still known by its source");
        assert_eq!(after[3], current(3), "the refusal too");
        assert!(store.read(|c| mail::meta(c, DONE)).await.unwrap().is_some());

        // Done once: a mail put back under its old key stays so at the next start.
        let (old, current) = (before[0].clone(), after[0].clone());
        store
            .write(move |c| Ok(c.execute("UPDATE messages SET provider_message_id = ?1 WHERE id = 'msg_0'", [old])?))
            .await
            .unwrap();
        run(store.clone(), CancellationToken::new()).await;
        assert_eq!(keys(store.clone()).await.unwrap()[0], before[0]);
        assert_ne!(before[0], current);
        store.close();
    }
}
