//! IMAP in: one task per folder. IDLE when the server offers it (re-issued before
//! `idle_timeout`), polling otherwise; reconnects with backoff and reports failures.
//!
//! Resume without loss or duplicates: per folder the checkpoint `(UIDVALIDITY, last UID)` is
//! advanced in the same transaction that commits the mails up to that UID. Mail is fetched
//! with `BODY.PEEK[]`, so fetching never marks it read. A changed UIDVALIDITY re-reads the folder;
//! content-hash dedup keeps that from duplicating anything. UIDs only grow, so mail deleted or
//! moved away after import is never seen again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::{Client, Session};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, TryStreamExt};
use tokio::net::TcpStream;

use super::config::{AfterImport, EmailChannelConfig, ImapConfig, TlsMode};
use super::mime;
use super::oauth2::{xoauth2, TokenSource, XOAuth2};
use super::tls::{self, Transport};
use crate::channels::{Inbound, RawInbound};
use crate::pipeline::{InboundContext, PreparedBatch};

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

pub(super) type ImapSession = Session<Transport>;

/// Why an IMAP session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum ImapError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("login refused: {0}")]
    Auth(String),
    #[error("IMAP error: {0}")]
    Protocol(String),
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ImapError {
    fn code(&self) -> &'static str {
        match self {
            ImapError::Connect(_) => "imap_connect",
            ImapError::Auth(_) => "imap_auth",
            ImapError::Protocol(_) => "imap_protocol",
            ImapError::Store(_) => "store",
        }
    }
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> Self {
        ImapError::Protocol(e.to_string())
    }
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
    let mut backoff = Duration::from_secs(1);
    while !cx.shutdown.is_cancelled() {
        match session(&channel, &imap, &folder, &cx, tokens.as_deref()).await {
            Ok(()) => return,
            Err(e) => {
                cx.report_error(e.code(), &format!("{folder}: {e}")).await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cx.shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect(imap: &ImapConfig) -> Result<Client<Transport>, ImapError> {
    let tcp = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect((imap.host.as_str(), imap.port)))
        .await
        .map_err(|_| ImapError::Connect(format!("{}:{} timed out", imap.host, imap.port)))?
        .map_err(|e| ImapError::Connect(format!("{}:{}: {e}", imap.host, imap.port)))?;
    let tls_config = || tls::client_config(imap.ca_file.as_deref()).map_err(ImapError::Connect);
    let mut client = match imap.tls {
        TlsMode::None => Client::new(Transport::Plain(tcp)),
        TlsMode::Implicit => Client::new(Transport::Tls(Box::new(
            tls::wrap(tcp, &imap.host, tls_config()?).await.map_err(ImapError::Connect)?,
        ))),
        TlsMode::Starttls => {
            let mut plain = Client::new(tcp);
            plain.read_response().await.map_err(|e| ImapError::Connect(e.to_string()))?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            let tcp = plain.into_inner();
            let tls = tls::wrap(tcp, &imap.host, tls_config()?).await.map_err(ImapError::Connect)?;
            return Ok(Client::new(Transport::Tls(Box::new(tls))));
        }
    };
    client.read_response().await.map_err(|e| ImapError::Connect(format!("no greeting: {e}")))?;
    Ok(client)
}

/// Connects and authenticates (password or XOAUTH2).
pub(super) async fn login(imap: &ImapConfig, tokens: Option<&TokenSource>) -> Result<ImapSession, ImapError> {
    if let Some(tokens) = tokens {
        let token = tokens.access_token().await.map_err(ImapError::Auth)?;
        let client = connect(imap).await?;
        let auth = XOAuth2(xoauth2(&imap.username, &token));
        return client.authenticate("XOAUTH2", auth).await.map_err(|(e, _)| ImapError::Auth(e.to_string()));
    }
    let client = connect(imap).await?;
    let password = imap.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
    client.login(&imap.username, &password).await.map_err(|(e, _)| ImapError::Auth(e.to_string()))
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
) -> Result<(), ImapError> {
    let mut session = login(imap, tokens).await?;
    let capabilities = session.capabilities().await?;
    let idle = capabilities.has_str("IDLE");
    let after = OnServer::new(
        imap.after_import().unwrap_or(AfterImport::Keep),
        capabilities.has_str("MOVE"),
        capabilities.has_str("UIDPLUS"),
    );
    let mailbox = session.select(folder).await?;
    let validity = mailbox.uid_validity.unwrap_or(0);
    let key = checkpoint_key(folder);
    let mut stored = cx.checkpoint(&key).await?;
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
    tracing::info!(channel = %cx.channel_id, folder, idle, last_uid, "IMAP folder open");
    if let OnServer::CopyAndFlagDeleted(target) = &after {
        tracing::warn!(channel = %cx.channel_id, folder, target, "the server has neither MOVE nor UIDPLUS: imported mail is copied and flagged \\Deleted, but not expunged (a plain EXPUNGE would also remove mail others flagged)");
    }
    let open = OpenFolder { channel, name: folder, validity, after, cx };
    loop {
        let since_filter = since.clone().filter(|_| last_uid == 0);
        last_uid = open.import_new(&mut session, last_uid, since_filter, &mut stored).await?;
        if cx.shutdown.is_cancelled() {
            let _ = session.logout().await;
            return Ok(());
        }
        if idle {
            let mut handle = session.idle();
            handle.init().await?;
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
            session = handle.done().await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(imap.poll_interval.0) => {}
                _ = cx.shutdown.cancelled() => {}
            }
            session.noop().await?;
        }
    }
}

/// A selected folder: what stays the same for as long as its session lasts.
struct OpenFolder<'a> {
    channel: &'a Arc<EmailChannelConfig>,
    name: &'a str,
    validity: u32,
    after: OnServer,
    cx: &'a InboundContext,
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
        let mut uids: Vec<u32> = session.uid_search(query).await?.into_iter().filter(|u| *u > last_uid).collect();
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
            for batch in size_batches(session, slice).await? {
                // On shutdown or reload, stop fetching and finish what is under way: a long backlog
                // must not hold up a stop (the rest is imported after the restart, from the
                // checkpoint).
                if cx.shutdown.is_cancelled() {
                    break 'backlog;
                }
                let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                let mut mails: Vec<(u32, Vec<u8>)> = session
                    .uid_fetch(&set, "(UID BODY.PEEK[])")
                    .await?
                    .try_filter_map(|f| async move { Ok(f.uid.zip(f.body().map(<[u8]>::to_vec))) })
                    .try_collect()
                    .await?;
                mails.sort_by_key(|(uid, _)| *uid);
                let Some(last) = mails.last().map(|(uid, _)| *uid) else { continue };
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
        Ok(last_uid)
    }
}

/// Parses a fetched batch and makes its attachments durable.
async fn prepare(
    channel: Arc<EmailChannelConfig>,
    cx: InboundContext,
    mails: Vec<(u32, Vec<u8>)>,
) -> Result<PreparedBatch, ImapError> {
    let raws = parse(channel, mails).await?;
    Ok(cx.prepare_batch(raws).await?)
}

/// Parses a fetched batch in UID order, in chunks spread over the blocking pool: MIME decoding
/// and hashing are most of the CPU an import costs, and the cores are otherwise idle while the
/// store commits and the server sends the next batch.
async fn parse(channel: Arc<EmailChannelConfig>, mails: Vec<(u32, Vec<u8>)>) -> Result<Vec<RawInbound>, ImapError> {
    const CHUNK: usize = 50;
    let mut mails = mails;
    let mut chunks = Vec::new();
    while !mails.is_empty() {
        let rest = mails.split_off(mails.len().min(CHUNK));
        let (chunk, channel) = (std::mem::replace(&mut mails, rest), channel.clone());
        chunks.push(tokio::task::spawn_blocking(move || {
            chunk.into_iter().map(|(_, bytes)| mime::to_raw_inbound(&channel, bytes)).collect::<Vec<_>>()
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
/// bodies).
async fn size_batches(session: &mut ImapSession, uids: &[u32]) -> Result<Vec<Vec<u32>>, ImapError> {
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let mut sizes: Vec<(u32, u64)> = session
        .uid_fetch(&set, "(UID RFC822.SIZE)")
        .await?
        .try_filter_map(|f| async move { Ok(f.uid.map(|uid| (uid, f.size.unwrap_or(0) as u64))) })
        .try_collect()
        .await?;
    sizes.sort_unstable();
    Ok(split_by_size(&sizes, FETCH_BATCH, FETCH_BATCH_BYTES))
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
        folder.after.apply(session, &self.set).await?;
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

    async fn apply(&self, session: &mut ImapSession, set: &str) -> Result<(), ImapError> {
        match self {
            OnServer::Keep => {}
            OnServer::Seen => {
                session.uid_store(set, "+FLAGS.SILENT (\\Seen)").await?.try_collect::<Vec<_>>().await?;
            }
            OnServer::Move(target) => session.uid_mv(set, target).await?,
            OnServer::CopyAndExpunge(target) | OnServer::CopyAndFlagDeleted(target) => {
                // Copied before flagged: a failure in between leaves a copy too many, never a
                // mail lost.
                session.uid_copy(set, target).await?;
                session.uid_store(set, "+FLAGS.SILENT (\\Deleted)").await?.try_collect::<Vec<_>>().await?;
                if matches!(self, OnServer::CopyAndExpunge(_)) {
                    session.uid_expunge(set).await?.try_collect::<Vec<_>>().await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let sizes: Vec<(u32, u64)> = vec![(1, 10), (2, 10), (3, 100), (4, 5), (5, 5), (6, 5)];
        assert_eq!(super::split_by_size(&sizes, 3, 50), vec![vec![1, 2], vec![3], vec![4, 5, 6]]);
        assert_eq!(super::split_by_size(&sizes, 2, 1000), vec![vec![1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(super::split_by_size(&[], 2, 10), Vec::<Vec<u32>>::new());
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
