//! IMAP in: one task per folder. IDLE when the server offers it (re-issued before
//! `idle_timeout`), polling otherwise; reconnects with backoff and reports failures.
//!
//! Resume without loss or duplicates: per folder the checkpoint `(UIDVALIDITY, last UID)` is
//! advanced in the same transaction that commits the mails up to that UID. Mail is fetched
//! with `BODY.PEEK[]`, so fetching never marks it read. A changed UIDVALIDITY re-reads the folder;
//! content-hash dedup keeps that from duplicating anything. UIDs only grow, so mail deleted or
//! moved away after import is never seen again.
//!
//! One mail the server cannot deliver (a damaged file: Dovecot answers its FETCH with BYE and
//! drops the connection; Gmail with "NO Some messages could not be FETCHed") must not stop the
//! folder. A batch whose fetch fails makes its mails suspects, fetched one by one from then on;
//! a suspect whose fetch alone fails twice is the culprit: recorded as unfetchable (channel
//! state, `/readyz`, one `channel.error`), passed over, and asked for again every
//! `unfetchable_retry` (after the new mail of a round) until it comes or is gone
//! (`inbound/unfetchable.rs`). Connecting and logging in are `imap.rs`'s.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, TryStreamExt};

use super::config::{AfterImport, EmailChannelConfig, ImapConfig};
use super::imap::{imap_error, login, within, ImapError, ImapSession};
use super::mime;
use super::oauth2::TokenSource;
use crate::channels::{Inbound, RawInbound};
use crate::pipeline::{InboundContext, PreparedBatch};
use unfetchable::unfetchable_key;

mod unfetchable;

/// Mails fetched per round trip, and their total size: bounds memory during a backlog import
/// whatever the mail sizes (one mail over the byte bound still makes a batch of its own).
const FETCH_BATCH: usize = 500;
const FETCH_BATCH_BYTES: u64 = 4 * 1024 * 1024;
/// Batches committed or waiting in the store's queue at once, besides the one being prepared
/// and the one being fetched. Two keep the writer busy; memory stays bounded by about four
/// batches whatever the backlog.
const MAX_QUEUED_BATCHES: usize = 2;
/// UIDs whose sizes are asked for in one request.
const SIZES_PER_REQUEST: usize = 1000;
/// The first request of an import asks for only this many: the first mails reach the store
/// (and the parsing and the writer start working) without waiting for a full batch.
const FIRST_REQUEST: usize = 50;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A session that lasted this long worked: the next reconnect starts with a short wait again.
const RESET_BACKOFF_AFTER: Duration = Duration::from_secs(60);

/// The wait before reconnecting: doubling from a second up to `MAX_BACKOFF` while sessions keep
/// failing, and a second again after one that worked for a while: a connection dropped once a
/// day must not cost minutes of mail each time.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Duration::from_secs(1) }
    }
}

impl Backoff {
    /// The wait after a session that lasted `lasted`.
    fn after(&mut self, lasted: Duration) -> Duration {
        if lasted > RESET_BACKOFF_AFTER {
            *self = Backoff::default();
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }
}

/// What a folder's loop remembers across its sessions.
struct FolderMemory {
    /// Mails in a batch whose fetch failed, with how often a fetch of that mail alone failed.
    suspects: HashMap<u32, u32>,
    /// When the unfetchable mails are asked for again.
    next_retry: Instant,
    /// Whether the current session got the folder open.
    opened: bool,
}

pub struct ImapInbound {
    pub config: Arc<EmailChannelConfig>,
}

impl Inbound for ImapInbound {
    fn run(self: Box<Self>, cx: InboundContext) -> BoxFuture<'static, ()> {
        async move {
            let Some(imap) = self.config.imap.clone() else { return };
            // One token source for all folders: one refresh, one stored rotation.
            let tokens = imap.oauth2.clone().map(|o| Arc::new(TokenSource::new(o, cx.state())));
            let folders: Vec<_> = imap
                .folders
                .iter()
                .map(|folder| {
                    // Each folder reports its own health: one folder's success does not clear
                    // another's error (a misspelt folder stays visible in /readyz).
                    let (config, imap, folder, cx, tokens) =
                        (self.config.clone(), imap.clone(), folder.clone(), cx.for_part(folder), tokens.clone());
                    tokio::spawn(async move { run_folder(config, imap, folder, cx, tokens).await })
                })
                .collect();
            futures_util::future::join_all(folders).await;
        }
        .boxed()
    }
}

async fn run_folder(
    channel: Arc<EmailChannelConfig>,
    imap: ImapConfig,
    folder: String,
    cx: InboundContext,
    tokens: Option<Arc<TokenSource>>,
) {
    let mut backoff = Backoff::default();
    let memory = Mutex::new(FolderMemory { suspects: HashMap::new(), next_retry: Instant::now(), opened: false });
    let mut reconnected_at_once = false;
    while !cx.shutdown.is_cancelled() {
        let started = Instant::now();
        match session(&channel, &imap, &folder, &cx, tokens.as_deref(), &memory).await {
            Ok(()) => return,
            Err(e) => {
                let opened = std::mem::take(&mut memory.lock().expect("folder memory").opened);
                // Servers close open sessions now and then (Gmail and Exchange end IDLE sessions
                // on their own schedule, an administrator kicks clients, a server restarts): a
                // session that comes back at once is no failure to report or to wait for. At
                // once only once in a row, unless the session had stood a while, so that a
                // server that drops every session at once still gets the backoff and a report.
                let stood = !reconnected_at_once || started.elapsed() >= STOOD_BEFORE_IT_DROPPED;
                if matches!(e, ImapError::Dropped(_)) && opened && stood {
                    tracing::info!(channel = %cx.channel_id, folder, error = %e, "the IMAP session ended; reconnecting");
                    reconnected_at_once = true;
                    continue;
                }
                reconnected_at_once = false;
                cx.report_error(e.code(), &format!("{folder}: {e}")).await;
                // A full disk: a new session would only fail at its first write again. The
                // mail waits on the server; the folder comes back once the store takes writes.
                if matches!(&e, ImapError::Store(s) if s.is_storage_full()) {
                    tracing::warn!(channel = %cx.channel_id, folder, "storage full: the folder waits for free space under storage.path");
                    if !cx.wait_for_storage().await {
                        return;
                    }
                    backoff = Backoff::default();
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.after(started.elapsed())) => {}
                    _ = cx.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// How long a session must have stood for a second drop in a row to be reconnected at once.
const STOOD_BEFORE_IT_DROPPED: Duration = Duration::from_secs(60);

/// Whether the folder's checkpoint belongs to another mailbox (the channel's IMAP `host`,
/// `port` or `username` changed since it was stored): then it is set back to the start and
/// the folder is read again, as after a UIDVALIDITY change (duplicates are recognised). Many
/// servers give every mailbox's INBOX the same UIDVALIDITY (those that number them, and
/// mailboxes created in the same second), and the old mailbox's last UID would skip as many of
/// the new one's mails, silently. A checkpoint stored before the mailbox was recorded with it
/// is taken to be this mailbox's.
async fn read_elsewhere_before(
    imap: &ImapConfig,
    folder: &str,
    validity: u32,
    cx: &InboundContext,
) -> Result<bool, ImapError> {
    let mailbox = format!("{}@{}:{}", imap.username, imap.host, imap.port);
    let mailbox_key = format!("imap-mailbox:{folder}");
    let recorded = cx.checkpoint(&mailbox_key).await?;
    let moved = recorded.as_ref().is_some_and(|r| *r != mailbox);
    if moved {
        tracing::warn!(channel = %cx.channel_id, folder, before = recorded.as_deref(), now = mailbox, "the channel reads another mailbox than before; re-reading the folder (duplicates are recognised)");
        // Back to the start first: a crash before the mailbox is recorded repeats this.
        cx.state().set(&checkpoint_key(folder), &format!("{validity}:0")).await?;
        cx.state().set(&unfetchable_key(folder), "0:").await?;
    }
    if recorded.as_deref() != Some(mailbox.as_str()) {
        cx.state().set(&mailbox_key, &mailbox).await?;
    }
    Ok(moved)
}

/// Parses a checkpoint `"<uidvalidity>:<last uid>"`.
fn parse_checkpoint(value: Option<&str>) -> Option<(u32, u32)> {
    let (validity, uid) = value?.split_once(':')?;
    Some((validity.parse().ok()?, uid.parse().ok()?))
}

/// One logged-in session on one folder, until shutdown (Ok) or an error.
async fn session(
    channel: &Arc<EmailChannelConfig>,
    imap: &ImapConfig,
    folder: &str,
    cx: &InboundContext,
    tokens: Option<&TokenSource>,
    memory: &Mutex<FolderMemory>,
) -> Result<(), ImapError> {
    let mut session = login(imap, tokens).await?;
    let capabilities = within(imap, "CAPABILITY", async { Ok(session.capabilities().await?) }).await?;
    let idle = capabilities.has_str("IDLE");
    let after = OnServer::new(
        imap.after_import().unwrap_or(AfterImport::Keep),
        capabilities.has_str("MOVE"),
        capabilities.has_str("UIDPLUS"),
    );
    let mailbox = within(imap, "SELECT", async { Ok(session.select(super::mutf7::encode(folder)).await?) }).await?;
    let validity = mailbox.uid_validity.unwrap_or(0);
    let key = checkpoint_key(folder);
    let mut stored = cx.checkpoint(&key).await?;
    if read_elsewhere_before(imap, folder, validity, cx).await? {
        stored = Some(format!("{validity}:0"));
    }
    // Set when the folder was first opened with `import_existing = false`: the IMAP date before
    // which mail was left alone on purpose.
    let since_key = format!("imap-since:{folder}");
    let mut since = cx.checkpoint(&since_key).await?;
    let mut last_uid = match parse_checkpoint(stored.as_deref()) {
        Some((saved, uid)) if saved == validity => uid,
        Some((saved, _)) => {
            tracing::warn!(channel = %cx.channel_id, folder, saved, now = validity, since, "UIDVALIDITY changed; re-reading the folder (duplicates are recognised)");
            0
        }
        None if !imap.import_existing => {
            // The day before, so that no server's time zone hides today's mail from a resync.
            let day = crate::model::time::imap_date(crate::model::time::now_ms() - 86_400_000);
            let skipped = mailbox.uid_next.map_or(0, |next| next.saturating_sub(1));
            let value = format!("{validity}:{skipped}");
            cx.state().set(&since_key, &day).await?;
            cx.state().set(&key, &value).await?;
            tracing::info!(channel = %cx.channel_id, folder, up_to_uid = skipped, "import_existing = false: the mail already in the folder is left alone");
            (stored, since) = (Some(value), Some(day));
            skipped
        }
        None => 0,
    };
    // A folder whose old mail was left alone, while nothing has been imported under its current
    // UIDVALIDITY (a resync, or an empty folder at first open), is read only from around the
    // first start on: were the filter dropped after a round that found nothing, the next round
    // would read the old mail.
    cx.report_ok();
    memory.lock().expect("folder memory").opened = true;
    tracing::info!(channel = %cx.channel_id, folder, idle, last_uid, "IMAP folder open");
    if let OnServer::CopyAndFlagDeleted(target) = &after {
        tracing::warn!(channel = %cx.channel_id, folder, target, "the server has neither MOVE nor UIDPLUS: imported mail is copied and flagged \\Deleted, but not expunged (a plain EXPUNGE would also remove mail others flagged)");
    }
    let open = OpenFolder { channel, imap, name: folder, validity, after, cx, memory };
    open.report_unfetchable().await?;
    loop {
        let since_filter = since.clone().filter(|_| last_uid == 0);
        last_uid = open.import_new(&mut session, last_uid, since_filter, &mut stored).await?;
        if cx.shutdown.is_cancelled() {
            let _ = session.logout().await;
            return Ok(());
        }
        if idle && told_of_new_mail(&session) {
            // The server told of new mail in answer to a command of the import (an EXISTS
            // during a FETCH or NOOP); it will not tell again in IDLE: look again first.
            continue;
        }
        if idle {
            // Silence is what IDLE waits through (up to `idle_timeout`): the transport's bound
            // on it is lifted meanwhile, and the commands around it are bounded as a whole.
            session.get_mut().set_limit(None);
            let mut handle = session.idle();
            within(imap, "IDLE", async { Ok(handle.init().await?) }).await?;
            let (wait, stop) = handle.wait_with_timeout(imap.idle_timeout.0);
            let woke = tokio::select! {
                r = wait => Some(r),
                _ = cx.shutdown.cancelled() => None,
            };
            drop(stop);
            if let Some(Err(e)) = woke {
                return Err(e.into());
            }
            if let Some(Ok(IdleResponse::NewData(_))) = woke {
                tracing::debug!(channel = %cx.channel_id, folder, "IDLE: mailbox changed");
            }
            session = within(imap, "DONE", async { Ok(handle.done().await?) }).await?;
            session.get_mut().set_limit(Some(imap.timeout.0));
        } else {
            tokio::select! {
                _ = tokio::time::sleep(imap.poll_interval.0) => {}
                _ = cx.shutdown.cancelled() => {}
            }
            session.noop().await?;
        }
    }
}

/// Whether, among the responses the server sent unasked since this was last asked (async-imap
/// keeps them aside while a command runs), one told of new mail (`EXISTS`) — or may have: the
/// place they are kept in holds 100 and drops what comes after (the EXPUNGEs of a large
/// `after_import` move fill it), so a full one counts as told.
fn told_of_new_mail(session: &ImapSession) -> bool {
    let kept = &session.unsolicited_responses;
    let mut told = kept.capacity().is_some_and(|capacity| kept.len() >= capacity);
    while let Ok(response) = kept.try_recv() {
        told |= matches!(response, async_imap::types::UnsolicitedResponse::Exists(_));
    }
    told
}

/// A selected folder: what stays the same for as long as its session lasts.
struct OpenFolder<'a> {
    channel: &'a Arc<EmailChannelConfig>,
    imap: &'a ImapConfig,
    name: &'a str,
    validity: u32,
    after: OnServer,
    cx: &'a InboundContext,
    memory: &'a Mutex<FolderMemory>,
}

impl OpenFolder<'_> {
    /// Imports every mail above `last_uid` (received on or after `since`, an IMAP date, when given),
    /// in UID order, batch by batch; returns the new last UID. `stored` is the folder's checkpoint
    /// as stored, kept current as batches commit.
    async fn import_new(
        &self,
        session: &mut ImapSession,
        mut last_uid: u32,
        since: Option<String>,
        stored: &mut Option<String>,
    ) -> Result<u32, ImapError> {
        let (cx, validity) = (self.cx, self.validity);
        let query = match &since {
            Some(day) => format!("UID {}:* SINCE {day}", last_uid + 1),
            None => format!("UID {}:*", last_uid + 1),
        };
        // `n:*` always matches the highest UID even when it is below n: filter.
        let (_, unfetchable) = self.unfetchable().await?;
        let mut uids: Vec<u32> = session
            .uid_search(query)
            .await?
            .into_iter()
            .filter(|u| *u > last_uid && !unfetchable.contains(u))
            .collect();
        uids.sort_unstable();
        // A pipeline: while this task fetches batch k+2, batch k+1 is parsed and its attachments
        // stored (on the blocking pool), and batches k and k+1 wait in the store's queue, so the
        // writer never idles between them. Batches are submitted strictly in UID order and each
        // commits in one transaction with the checkpoint that covers it, moved only from the value
        // the previous batch left: a batch queued behind one that failed fails too.
        let key = checkpoint_key(self.name);
        let mut preparing: Option<Preparing> = None;
        let mut in_flight: VecDeque<Committing> = VecDeque::new();
        // Sizes are asked for a slice of the backlog at a time, so the first batch is fetched
        // without waiting for the sizes of all of it; the first slice is small.
        let (head, rest) = uids.split_at(uids.len().min(FIRST_REQUEST));
        let slices = std::iter::once(head).filter(|h| !h.is_empty()).chain(rest.chunks(SIZES_PER_REQUEST));
        'backlog: for slice in slices {
            let (batches, oversized) = size_batches(session, slice, self.channel.max_mail_bytes).await?;
            for batch in self.isolate_suspects(batches) {
                // On shutdown or reload, stop fetching and finish what is under way: a long backlog
                // must not hold up a stop (the rest is imported after the restart, from the
                // checkpoint).
                if cx.shutdown.is_cancelled() {
                    break 'backlog;
                }
                let fetch = match oversized.get(&batch[0]).filter(|_| batch.len() == 1) {
                    Some(&size) => fetch_header(session, batch[0], size).await,
                    None => fetch_bodies(self, session, &batch).await,
                };
                let (mails, refused) = match fetch {
                    Ok(mails) => {
                        self.cleared(&batch);
                        (mails, None)
                    }
                    // The culprit, and the session still stands (a NO): go on past it.
                    Err(e) => (Vec::new(), Some(self.fetch_failed(&batch, e).await?)),
                };
                let Some(last) = mails.iter().map(|m| m.uid).chain(refused).max() else { continue };
                // Only what was fetched whole is acted on (`after_import`): never move a mail
                // away unread.
                let whole: Vec<u32> = mails.iter().filter(|m| m.oversized.is_none()).map(|m| m.uid).collect();
                let set = uid_set(&whole);
                let task = tokio::spawn(prepare(self.channel.clone(), cx.clone(), mails));
                if let Some(ready) = preparing.replace(Preparing { task, last, set }) {
                    in_flight.push_back(ready.submit(cx, &key, validity, stored).await?);
                }
                while in_flight.len() > MAX_QUEUED_BATCHES {
                    last_uid = in_flight.pop_front().expect("non-empty").finish(session, self).await?;
                }
            }
        }
        if let Some(ready) = preparing.take() {
            in_flight.push_back(ready.submit(cx, &key, validity, stored).await?);
        }
        while let Some(committing) = in_flight.pop_front() {
            last_uid = committing.finish(session, self).await?;
        }
        // After the new mail: a mail that breaks the session on every fetch must not hold it up.
        self.retry_unfetchable(session).await?;
        Ok(last_uid)
    }
}

/// A fetched mail: its UID and bytes, when the mailbox got it (INTERNALDATE, ms), and its size
/// when only its header was fetched (a mail over the channel's `max_mail_bytes`).
struct Fetched {
    uid: u32,
    bytes: Vec<u8>,
    received_at: Option<i64>,
    oversized: Option<u64>,
}

/// A FETCH response's INTERNALDATE in ms.
fn internal_date(fetch: &async_imap::types::Fetch) -> Option<i64> {
    fetch.internal_date().map(|at| at.timestamp_millis())
}

/// The mails of a UID set, in UID order (a mail gone from the server is simply absent). A mail
/// the server lists without its body is an error, never skipped, unless the server then shows
/// it gone (another client deleted it after our SEARCH): the checkpoint would pass it (Dovecot
/// sends `* 2 FETCH (UID 2)` and then BYE when it cannot read a mail's file).
async fn fetch_bodies(
    folder: &OpenFolder<'_>,
    session: &mut ImapSession,
    uids: &[u32],
) -> Result<Vec<Fetched>, ImapError> {
    let fetches: Vec<_> = session
        .uid_fetch(uid_set(uids), "(UID INTERNALDATE BODY.PEEK[])")
        .await
        .map_err(imap_error)?
        .try_collect()
        .await
        .map_err(imap_error)?;
    let asked: std::collections::HashSet<u32> = uids.iter().copied().collect();
    let mut mails: Vec<Fetched> = fetches
        .iter()
        .filter_map(|f| {
            let uid = f.uid.filter(|uid| asked.contains(uid))?;
            Some(Fetched { uid, bytes: f.body()?.to_vec(), received_at: internal_date(f), oversized: None })
        })
        .collect();
    // Other FETCH responses may come unasked (another client changed a mail's flags); one of
    // ours without its body, and none with it, is not such a one: either the mail was deleted
    // by another client after our SEARCH (Dovecot answers its body as NIL until it may tell
    // us of the EXPUNGE), or the server cannot deliver it.
    let bodiless: Vec<u32> = fetches
        .iter()
        .filter_map(|f| f.uid.filter(|uid| f.body().is_none() && asked.contains(uid)))
        .filter(|uid| !mails.iter().any(|m| m.uid == *uid))
        .collect();
    if !bodiless.is_empty() {
        // NOOP lets the server report the expunge; a deleted mail is then no longer found. A
        // session that cannot even answer that (Dovecot ends it after a mail it cannot read)
        // reports the missing body, which is what went wrong.
        let still_there = async {
            session.noop().await?;
            session.uid_search(format!("UID {}", uid_set(&bodiless))).await
        };
        let still_there = still_there.await.unwrap_or_else(|_| bodiless.iter().copied().collect());
        if let Some(uid) = bodiless.iter().find(|uid| still_there.contains(uid)) {
            return Err(ImapError::Protocol(format!("the server sent UID {uid} without its body")));
        }
        let (channel, folder) = (&folder.cx.channel_id, folder.name);
        tracing::info!(%channel, folder, uids = %uid_set(&bodiless), "mail deleted on the server before it was fetched; passed over");
    }
    mails.sort_by_key(|m| m.uid);
    Ok(mails)
}

/// The header of a mail over `max_mail_bytes` (`size` bytes), which is not fetched whole.
async fn fetch_header(session: &mut ImapSession, uid: u32, size: u64) -> Result<Vec<Fetched>, ImapError> {
    let fetches: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID INTERNALDATE BODY.PEEK[HEADER])")
        .await
        .map_err(imap_error)?
        .try_collect()
        .await
        .map_err(imap_error)?;
    let fetched = fetches.iter().filter(|f| f.uid == Some(uid)).find_map(|f| Some((f.header()?, internal_date(f))));
    Ok(fetched
        .map(|(header, received_at)| Fetched { uid, bytes: header.to_vec(), received_at, oversized: Some(size) })
        .into_iter()
        .collect())
}

/// An IMAP sequence set naming exactly `uids`, consecutive runs written as ranges (`1:500,502`):
/// a backlog's UIDs are mostly consecutive, and a command line naming a thousand UIDs one by one
/// outgrows the ~8 KB that servers are asked to accept (RFC 7162 §4).
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut runs = sorted.iter().peekable();
    while let Some(&first) = runs.next() {
        let mut last = first;
        while runs.peek().is_some_and(|&&next| next == last + 1) {
            last = *runs.next().expect("peeked");
        }
        parts.push(if last == first { first.to_string() } else { format!("{first}:{last}") });
    }
    parts.join(",")
}

/// Parses a fetched batch and makes its attachments durable.
async fn prepare(
    channel: Arc<EmailChannelConfig>,
    cx: InboundContext,
    mails: Vec<Fetched>,
) -> Result<PreparedBatch, ImapError> {
    let raws = parse(channel, mails).await?;
    // The certificates of validly S/MIME-signed mail from others, to encrypt to them.
    for raw in raws.iter().filter(|r| !r.sender_certificates.is_empty() && !r.sent_by_us) {
        let signer =
            raw.signature.as_ref().filter(|s| s.kind == "smime" && s.status == crate::model::SignatureStatus::Valid);
        if let Some(address) = signer.and_then(|s| s.signer.as_deref()) {
            super::smime_encrypt::remember(&cx.state(), address, &raw.sender_certificates).await;
        }
    }
    // The keys of Autocrypt headers, to encrypt to their senders: not from our own mail, an
    // automatic one, spam, or one its receiving server found forged.
    let forged = |raw: &RawInbound| raw.authentication.as_ref().is_some_and(|a| a.failed());
    for raw in raws.iter().filter(|r| !r.sent_by_us && !r.auto_reply && r.refusal.is_none() && !forged(r)) {
        if let Some(keydata) = &raw.sender_autocrypt_key {
            super::autocrypt::remember(&cx.state(), &raw.from.address, keydata, raw.sent_at).await;
        }
    }
    Ok(cx.prepare_batch(raws).await?)
}

/// Parses a fetched batch in UID order, in chunks spread over the blocking pool: MIME decoding
/// and hashing are most of the CPU an import costs, and the cores are otherwise idle while the
/// store commits and the server sends the next batch.
async fn parse(channel: Arc<EmailChannelConfig>, mails: Vec<Fetched>) -> Result<Vec<RawInbound>, ImapError> {
    const CHUNK: usize = 50;
    let mut mails = mails;
    let mut chunks = Vec::new();
    while !mails.is_empty() {
        let rest = mails.split_off(mails.len().min(CHUNK));
        let (chunk, channel) = (std::mem::replace(&mut mails, rest), channel.clone());
        chunks.push(tokio::task::spawn_blocking(move || {
            let translate = |mail: Fetched| {
                let mut raw = match mail.oversized {
                    None => mime::to_raw_inbound(&channel, mail.bytes),
                    Some(size) => mime::oversized_to_raw_inbound(&channel, mail.bytes, size),
                };
                raw.received_at = mail.received_at;
                raw
            };
            chunk.into_iter().map(translate).collect::<Vec<_>>()
        }));
    }
    let mut raws = Vec::new();
    for chunk in chunks {
        // A parser panic on one mail is caught in `mime::to_raw_inbound` (the mail is kept whole);
        // anything else failing here ends the session, and the batch is fetched again.
        raws.extend(chunk.await.map_err(|e| ImapError::Protocol(format!("MIME parsing failed: {e}")))?);
    }
    Ok(raws)
}

/// Splits `uids` (at most `SIZES_PER_REQUEST`) into batches of at most `FETCH_BATCH` mails and
/// `FETCH_BATCH_BYTES` bytes, asking the server for their sizes first (`RFC822.SIZE`, cheap: no
/// bodies). Mails over `max_mail_bytes` come alone in a batch, and with their sizes.
async fn size_batches(
    session: &mut ImapSession,
    uids: &[u32],
    max_mail_bytes: u64,
) -> Result<(Vec<Vec<u32>>, HashMap<u32, u64>), ImapError> {
    let mut sizes: Vec<(u32, u64)> = session
        .uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
        .await?
        .try_filter_map(|f| async move { Ok(f.uid.map(|uid| (uid, f.size.unwrap_or(0) as u64))) })
        .try_collect()
        .await?;
    sizes.sort_unstable();
    let oversized: HashMap<u32, u64> = sizes.iter().copied().filter(|(_, size)| *size > max_mail_bytes).collect();
    let batches = split_by_size(&sizes, FETCH_BATCH, FETCH_BATCH_BYTES);
    let batches = if oversized.is_empty() { batches } else { isolate(batches, |uid| oversized.contains_key(&uid)) };
    Ok((batches, oversized))
}

/// `batches` with every mail `alone` says so of in a batch of its own, in UID order.
fn isolate(batches: Vec<Vec<u32>>, alone: impl Fn(u32) -> bool) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for batch in batches {
        let mut rest = Vec::new();
        for uid in batch {
            if alone(uid) {
                if !rest.is_empty() {
                    out.push(std::mem::take(&mut rest));
                }
                out.push(vec![uid]);
            } else {
                rest.push(uid);
            }
        }
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// The `channel_state` key of a folder's checkpoint.
fn checkpoint_key(folder: &str) -> String {
    format!("imap:{folder}")
}

/// Pure batching: consecutive UIDs, at most `count` per batch and `bytes` in total.
fn split_by_size(sizes: &[(u32, u64)], count: usize, bytes: u64) -> Vec<Vec<u32>> {
    let mut batches: Vec<Vec<u32>> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut total = 0;
    for &(uid, size) in sizes {
        if !current.is_empty() && (current.len() == count || total + size > bytes) {
            batches.push(std::mem::take(&mut current));
            total = 0;
        }
        current.push(uid);
        total += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// A fetched batch being parsed and prepared.
struct Preparing {
    task: tokio::task::JoinHandle<Result<PreparedBatch, ImapError>>,
    last: u32,
    set: String,
}

impl Preparing {
    /// Waits until the batch is prepared and queues it for commit behind the batches before it.
    async fn submit(
        self,
        cx: &InboundContext,
        key: &str,
        validity: u32,
        stored: &mut Option<String>,
    ) -> Result<Committing, ImapError> {
        let prepared = self.task.await.map_err(|e| ImapError::Protocol(format!("preparing a batch failed: {e}")))??;
        let value = format!("{validity}:{}", self.last);
        let previous = stored.replace(value.clone());
        let commit = cx.submit_batch(prepared, key, previous, &value);
        Ok(Committing { commit: Box::pin(commit), last: self.last, set: self.set })
    }
}

/// A batch queued for commit and not yet confirmed.
struct Committing {
    commit: BoxFuture<'static, Result<Vec<crate::pipeline::Outcome>, crate::store::StoreError>>,
    last: u32,
    set: String,
}

impl Committing {
    /// Waits for the commit (which advanced the checkpoint), then acts on the server; returns the
    /// new last UID.
    async fn finish(self, session: &mut ImapSession, folder: &OpenFolder<'_>) -> Result<u32, ImapError> {
        let outcomes = self.commit.await?;
        tracing::debug!(channel = %folder.cx.channel_id, folder = folder.name, mails = outcomes.len(), last_uid = self.last, "mails imported");
        // Everything up to `last` is committed, and the checkpoint with it: act on the server.
        folder.after.apply(folder, session, &self.set).await?;
        Ok(self.last)
    }
}

/// `after_import` as this server can carry it out.
#[derive(Debug, PartialEq, Eq)]
enum OnServer {
    Keep,
    Seen,
    /// RFC 6851 `UID MOVE`.
    Move(String),
    /// No MOVE: `UID COPY`, flag `\Deleted`, and `UID EXPUNGE` (RFC 4315 UIDPLUS) of exactly
    /// those UIDs.
    CopyAndExpunge(String),
    /// Neither MOVE nor UIDPLUS: copied and flagged `\Deleted`; expunging is left to the
    /// mailbox's owner, since a plain `EXPUNGE` would also remove mail others flagged.
    CopyAndFlagDeleted(String),
}

impl OnServer {
    fn new(after: AfterImport, has_move: bool, has_uidplus: bool) -> OnServer {
        match after {
            AfterImport::Keep => OnServer::Keep,
            AfterImport::Seen => OnServer::Seen,
            AfterImport::Move(target) if has_move => OnServer::Move(target),
            AfterImport::Move(target) if has_uidplus => OnServer::CopyAndExpunge(target),
            AfterImport::Move(target) => OnServer::CopyAndFlagDeleted(target),
        }
    }

    /// Acts on the mails `set` of `folder`'s session once they are committed.
    async fn apply(&self, folder: &OpenFolder<'_>, session: &mut ImapSession, set: &str) -> Result<(), ImapError> {
        match self.apply_once(session, set).await {
            // Another client deleted or moved some of these mails since we fetched them, and the
            // server refuses the command for it (Dovecot: `NO [EXPUNGEISSUED]`, RFC 5530). Once
            // the session has heard of it (NOOP), the command acts on the mails still there.
            Err(ImapError::Refused(reason)) if reason.contains("EXPUNGEISSUED") => {
                let (channel, folder) = (&folder.cx.channel_id, folder.name);
                tracing::info!(%channel, folder, set, "some imported mail was deleted or moved by another client; acting on the rest");
                session.noop().await.map_err(imap_error)?;
                self.apply_once(session, set).await
            }
            done => done,
        }
    }

    async fn apply_once(&self, session: &mut ImapSession, set: &str) -> Result<(), ImapError> {
        if set.is_empty() {
            return Ok(());
        }
        match self {
            OnServer::Keep => {}
            OnServer::Seen => {
                session
                    .uid_store(set, "+FLAGS.SILENT (\\Seen)")
                    .await
                    .map_err(imap_error)?
                    .try_collect::<Vec<_>>()
                    .await?;
            }
            OnServer::Move(target) => session.uid_mv(set, super::mutf7::encode(target)).await.map_err(imap_error)?,
            OnServer::CopyAndExpunge(target) | OnServer::CopyAndFlagDeleted(target) => {
                // Copied before flagged: a failure in between leaves a copy too many, never a
                // mail lost.
                session.uid_copy(set, super::mutf7::encode(target)).await.map_err(imap_error)?;
                let flagged = session.uid_store(set, "+FLAGS.SILENT (\\Deleted)").await.map_err(imap_error)?;
                flagged.try_collect::<Vec<_>>().await?;
                if matches!(self, OnServer::CopyAndExpunge(_)) {
                    session.uid_expunge(set).await.map_err(imap_error)?.try_collect::<Vec<_>>().await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn uid_sets_name_exactly_the_uids_with_runs_as_ranges() {
        assert_eq!(super::uid_set(&[1, 2, 3, 4, 6, 8, 9]), "1:4,6,8:9");
        assert_eq!(super::uid_set(&[7]), "7");
        assert_eq!(super::uid_set(&[5, 3, 4, 3]), "3:5");
        assert_eq!(super::uid_set(&[u32::MAX - 1, u32::MAX]), format!("{}:{}", u32::MAX - 1, u32::MAX));
        assert_eq!(super::uid_set(&[]), "");
        let backlog: Vec<u32> = (100_000..101_000).collect();
        assert_eq!(super::uid_set(&backlog), "100000:100999");
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let sizes: Vec<(u32, u64)> = vec![(1, 10), (2, 10), (3, 100), (4, 5), (5, 5), (6, 5)];
        assert_eq!(super::split_by_size(&sizes, 3, 50), vec![vec![1, 2], vec![3], vec![4, 5, 6]]);
        assert_eq!(super::split_by_size(&sizes, 2, 1000), vec![vec![1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(super::split_by_size(&[], 2, 10), Vec::<Vec<u32>>::new());
    }

    #[test]
    fn backoff_doubles_while_sessions_fail_and_starts_over_after_one_that_worked() {
        let mut backoff = super::Backoff::default();
        let quick = Duration::from_millis(10);
        let waits: Vec<u64> = (0..11).map(|_| backoff.after(quick).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.after(Duration::from_secs(3600)).as_secs(), 1, "after an hour-long session");
        assert_eq!(backoff.after(quick).as_secs(), 2);
    }

    #[test]
    fn isolated_mails_get_batches_of_their_own_in_uid_order() {
        let batches = vec![vec![1, 2, 3, 4], vec![5, 6]];
        assert_eq!(
            super::isolate(batches.clone(), |uid| uid == 2 || uid == 5),
            vec![vec![1], vec![2], vec![3, 4], vec![5], vec![6]]
        );
        assert_eq!(super::isolate(batches.clone(), |_| false), batches);
    }

    #[test]
    fn move_falls_back_to_what_the_server_offers() {
        use super::{AfterImport, OnServer};
        let archive = || AfterImport::Move("Archive".into());
        assert_eq!(OnServer::new(archive(), true, true), OnServer::Move("Archive".into()));
        assert_eq!(OnServer::new(archive(), false, true), OnServer::CopyAndExpunge("Archive".into()));
        assert_eq!(OnServer::new(archive(), false, false), OnServer::CopyAndFlagDeleted("Archive".into()));
        assert_eq!(OnServer::new(AfterImport::Seen, false, false), OnServer::Seen);
        assert_eq!(OnServer::new(AfterImport::Keep, true, true), OnServer::Keep);
    }

    #[test]
    fn checkpoints_parse() {
        assert_eq!(super::parse_checkpoint(Some("1700000000:42")), Some((1_700_000_000, 42)));
        assert_eq!(super::parse_checkpoint(Some("garbage")), None);
        assert_eq!(super::parse_checkpoint(None), None);
    }
}
