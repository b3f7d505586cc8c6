//! A mail the server cannot deliver must not stop its folder. A batch whose fetch fails makes
//! its mails suspects, fetched one by one from then on; a suspect whose fetch alone fails
//! `UNFETCHABLE_AFTER` times is the culprit: recorded as unfetchable (channel state, `/readyz`,
//! one `channel.error`), passed over, and asked for again every `unfetchable_retry` until it
//! comes or is gone. The folder loop (`inbound.rs`) calls in here; the checkpoint never passes
//! a mail that was neither imported nor recorded.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{fetch_bodies, isolate, prepare, uid_set, ImapError, ImapSession, OpenFolder};

/// Failed fetches of one mail alone after which it is taken as one the server cannot deliver.
const UNFETCHABLE_AFTER: u32 = 2;

impl OpenFolder<'_> {
    /// `batches` with every mail under suspicion in a batch of its own.
    pub(super) fn isolate_suspects(&self, batches: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
        let memory = self.memory.lock().expect("folder memory");
        if memory.suspects.is_empty() {
            return batches;
        }
        isolate(batches, |uid| memory.suspects.contains_key(&uid))
    }

    /// These mails were fetched: no longer suspects.
    pub(super) fn cleared(&self, batch: &[u32]) {
        let mut memory = self.memory.lock().expect("folder memory");
        if !memory.suspects.is_empty() {
            for uid in batch {
                memory.suspects.remove(uid);
            }
        }
    }

    /// A batch's fetch failed with `error`. Its mails become suspects (fetched alone from now
    /// on); a mail whose fetch alone failed `UNFETCHABLE_AFTER` times is recorded as
    /// unfetchable. Returns that mail when the session still stands (the server said NO), so
    /// the folder goes on past it; otherwise the error, and the next session goes on.
    pub(super) async fn fetch_failed(&self, batch: &[u32], error: ImapError) -> Result<u32, ImapError> {
        let culprit = {
            let mut memory = self.memory.lock().expect("folder memory");
            match batch {
                [uid] => {
                    let failures = memory.suspects.entry(*uid).or_insert(0);
                    *failures += 1;
                    (*failures >= UNFETCHABLE_AFTER).then(|| {
                        memory.suspects.remove(uid);
                        *uid
                    })
                }
                _ => {
                    for uid in batch {
                        memory.suspects.entry(*uid).or_insert(0);
                    }
                    None
                }
            }
        };
        tracing::warn!(channel = %self.cx.channel_id, folder = self.name, mails = batch.len(), first_uid = batch[0], error = %error, "fetching mail failed; its mails are fetched one by one from now on");
        let Some(uid) = culprit else { return Err(error) };
        self.add_unfetchable(uid, &error.to_string()).await?;
        match error {
            ImapError::Refused(_) => Ok(uid),
            other => Err(other),
        }
    }

    /// The folder's unfetchable mails as stored (`None`: none yet), and their UIDs under the
    /// current UIDVALIDITY (after a change the folder is read again from the start anyway).
    pub(super) async fn unfetchable(&self) -> Result<(Option<String>, BTreeSet<u32>), ImapError> {
        let stored = self.cx.checkpoint(&unfetchable_key(self.name)).await?;
        let uids = stored
            .as_deref()
            .and_then(|v| v.split_once(':'))
            .filter(|(validity, _)| validity.parse() == Ok(self.validity))
            .map(|(_, uids)| uids.split(',').filter_map(|u| u.parse().ok()).collect())
            .unwrap_or_default();
        Ok((stored, uids))
    }

    fn unfetchable_value(&self, uids: &BTreeSet<u32>) -> String {
        let listed: Vec<String> = uids.iter().map(u32::to_string).collect();
        format!("{}:{}", self.validity, listed.join(","))
    }

    /// Records a mail the server cannot deliver (before the checkpoint may pass it), and
    /// reports it: log, `/readyz`, one `channel.error`.
    async fn add_unfetchable(&self, uid: u32, error: &str) -> Result<(), ImapError> {
        let (_, mut uids) = self.unfetchable().await?;
        uids.insert(uid);
        self.cx.state().set(&unfetchable_key(self.name), &self.unfetchable_value(&uids)).await?;
        tracing::warn!(channel = %self.cx.channel_id, folder = self.name, uid, error, "the server cannot deliver this mail; the folder goes on without it");
        self.report_unfetchable_uid(uid).await;
        Ok(())
    }

    /// Shows the stored unfetchable mails in `/readyz` when a session opens (after a restart
    /// the health state is new); those of an earlier UIDVALIDITY are dropped, since the folder
    /// is read again from the start.
    pub(super) async fn report_unfetchable(&self) -> Result<(), ImapError> {
        let (stored, uids) = self.unfetchable().await?;
        let stale = stored.as_deref().and_then(|v| v.split_once(':')).filter(|(v, _)| v.parse() != Ok(self.validity));
        if let Some((_, old)) = stale {
            for uid in old.split(',').filter_map(|u| u.parse::<u32>().ok()) {
                self.cx.for_part(&unfetchable_part(self.name, uid)).report_ok();
            }
            self.cx.state().set(&unfetchable_key(self.name), &self.unfetchable_value(&BTreeSet::new())).await?;
        }
        for uid in uids {
            self.report_unfetchable_uid(uid).await;
        }
        Ok(())
    }

    async fn report_unfetchable_uid(&self, uid: u32) {
        let message = format!(
            "{}: the server cannot deliver the mail with UID {uid}; the folder goes on without it, and it is asked for again every {:?}",
            self.name, self.imap.unfetchable_retry.0
        );
        self.cx.for_part(&unfetchable_part(self.name, uid)).report_error("imap_unfetchable", &message).await;
    }

    /// When due, fetches the folder's unfetchable mails again: those that come are imported
    /// (and the list shrinks in the same transaction), those gone from the server are dropped
    /// from it. The next time is set first: a mail that breaks the session is not asked for
    /// again at once.
    pub(super) async fn retry_unfetchable(&self, session: &mut ImapSession) -> Result<(), ImapError> {
        {
            let mut memory = self.memory.lock().expect("folder memory");
            if memory.next_retry > Instant::now() {
                return Ok(());
            }
            memory.next_retry = Instant::now() + self.imap.unfetchable_retry.0;
        }
        let (stored, uids) = self.unfetchable().await?;
        if uids.is_empty() {
            return Ok(());
        }
        let (mut mails, mut still) = (Vec::new(), BTreeSet::new());
        for uid in &uids {
            match fetch_bodies(self, session, &[*uid]).await {
                Ok(mail) => mails.extend(mail),
                Err(ImapError::Refused(_)) => {
                    still.insert(*uid);
                }
                Err(e) => return Err(e),
            }
        }
        if still == uids {
            return Ok(());
        }
        let fetched: Vec<u32> = mails.iter().map(|m| m.uid).collect();
        let prepared = prepare(self.channel.clone(), self.cx.clone(), mails).await?;
        let key = unfetchable_key(self.name);
        self.cx.submit_batch(prepared, &key, stored, &self.unfetchable_value(&still)).await?;
        self.after.apply(self, session, &uid_set(&fetched)).await?;
        for uid in uids.difference(&still) {
            tracing::info!(channel = %self.cx.channel_id, folder = self.name, uid, imported = fetched.contains(uid), "a mail the server refused before is no longer refused");
            self.cx.for_part(&unfetchable_part(self.name, *uid)).report_ok();
        }
        Ok(())
    }
}

/// The `channel_state` key of a folder's unfetchable mails: `"<uidvalidity>:<uid>,<uid>…"`.
pub(super) fn unfetchable_key(folder: &str) -> String {
    format!("imap-unfetchable:{folder}")
}

/// The health part of one unfetchable mail.
fn unfetchable_part(folder: &str, uid: u32) -> String {
    format!("{folder} UID {uid}")
}
