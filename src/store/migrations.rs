//! Versioned schema migrations, applied in order at open; `PRAGMA user_version` records the last.
//!
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: the core schema.
    r#"
    CREATE TABLE contacts (
        id TEXT PRIMARY KEY,
        name TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE identities (
        identity TEXT PRIMARY KEY,            -- email:…, tel:+…, telegram:…, ext:<channel>:<address>
        contact_id TEXT NOT NULL REFERENCES contacts(id),
        created_at INTEGER NOT NULL
    );
    CREATE INDEX identities_contact ON identities(contact_id);

    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        channel_type TEXT NOT NULL,
        thread_key TEXT NOT NULL,
        contact_id TEXT NOT NULL REFERENCES contacts(id),
        peer_address TEXT NOT NULL,
        subject TEXT,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_message_at INTEGER
    );
    CREATE UNIQUE INDEX conversations_thread ON conversations(channel_id, thread_key);
    CREATE INDEX conversations_contact ON conversations(contact_id);

    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        channel_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        status TEXT NOT NULL,
        provider_message_id TEXT,             -- inbound: the dedup key (external_id, mail hash)
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL                    -- the message object as JSON
    );
    CREATE UNIQUE INDEX messages_inbound_dedup ON messages(channel_id, provider_message_id)
        WHERE direction = 'inbound' AND provider_message_id IS NOT NULL;
    CREATE INDEX messages_conversation ON messages(conversation_id, created_at);

    CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        filename TEXT,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE INDEX attachments_message ON attachments(message_id);

    -- The one append-only log. seq is the rowid: assigned by the single writer, so it is also
    -- commit order and readers never see a gap fill in later.
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        ordering_key TEXT NOT NULL,           -- conversation (or contact) id: per-key delivery order
        created_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );

    CREATE TABLE outbound_jobs (
        message_id TEXT PRIMARY KEY REFERENCES messages(id),
        channel_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX outbound_jobs_due ON outbound_jobs(due_at);

    CREATE TABLE idempotency_keys (
        token_name TEXT NOT NULL,
        key TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (token_name, key)
    );

    CREATE TABLE webhook_consumers (
        id TEXT PRIMARY KEY,
        scan_seq INTEGER NOT NULL,            -- every event <= scan_seq has been fanned out
        disabled_at INTEGER,
        disabled_reason TEXT,
        last_error TEXT,
        last_error_at INTEGER
    );
    CREATE TABLE webhook_deliveries (
        consumer_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        ordering_key TEXT NOT NULL,
        created_at INTEGER NOT NULL,          -- the event's time, for latency metrics
        state TEXT NOT NULL,                  -- pending | dead
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        PRIMARY KEY (consumer_id, seq)
    ) WITHOUT ROWID;

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    "#,
    // 2: mail threading and channel checkpoints.
    r#"
    -- Message-ID headers seen or sent, per channel. Not unique: two different mails may share
    -- a Message-ID and both are kept.
    CREATE TABLE mail_ids (
        channel_id TEXT NOT NULL,
        header_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX mail_ids_header ON mail_ids(channel_id, header_id);
    CREATE INDEX mail_ids_conversation ON mail_ids(conversation_id, created_at);

    -- Who took part in a conversation (senders and recipients), for the sender guard.
    CREATE TABLE participants (
        conversation_id TEXT NOT NULL,
        identity TEXT NOT NULL,
        PRIMARY KEY (conversation_id, identity)
    ) WITHOUT ROWID;

    -- Normalised subject, for subject threading within a window.
    ALTER TABLE conversations ADD COLUMN subject_key TEXT;
    CREATE INDEX conversations_subject ON conversations(channel_id, contact_id, subject_key);

    -- Pull-channel checkpoints (IMAP: per folder UIDVALIDITY and last committed UID).
    CREATE TABLE channel_state (
        channel_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (channel_id, key)
    ) WITHOUT ROWID;
    "#,
    // 3: inbound items refused with a reason (exactly one outcome per item, recorded).
    r#"
    CREATE TABLE rejected_inbound (
        channel_id TEXT NOT NULL,
        dedup_key TEXT,
        reason TEXT NOT NULL,
        summary TEXT NOT NULL,                -- JSON: from, subject, provider message id
        created_at INTEGER NOT NULL
    );
    CREATE INDEX rejected_inbound_dedup ON rejected_inbound(channel_id, dedup_key);
    "#,
    // 4: attachment blobs in pack files (see store/blobs.rs); a hash not listed here is a file
    // from before packs.
    r#"
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        pack TEXT NOT NULL,                   -- file name under blobs/packs
        offset INTEGER NOT NULL,
        size INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 5: indexes no query uses (attachments are found by id, conversations by thread, subject or
    // id): each cost a B-tree insert per message or conversation.
    r#"
    DROP INDEX attachments_message;
    DROP INDEX conversations_contact;
    "#,
    // 6: a refused item an operator took in after all: the message it became, and when.
    r#"
    ALTER TABLE rejected_inbound ADD COLUMN accepted_message_id TEXT;
    ALTER TABLE rejected_inbound ADD COLUMN accepted_at INTEGER;
    "#,
    // 7: a refusal that judged the moment (a sender limit) keeps the item's dedup key too, but
    // does not decide the item when it is offered again (remembered = 0); when it comes in
    // later, the refusal names the message it became.
    r#"
    ALTER TABLE rejected_inbound ADD COLUMN remembered INTEGER NOT NULL DEFAULT 1;
    "#,
    // 8: mail is known for deduplication by what its author wrote (`mail-sha256:…`), no longer
    // by its whole source (`sha256:…`), which differs between two deliveries of one mail. A
    // store that may hold mail from before (a mail channel has a checkpoint) records when this
    // ran: mail that reached the mailbox before then is looked up by its old key as well.
    r#"
    CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO store_meta (key, value)
        SELECT 'mail_source_keys_before', CAST(unixepoch('subsec') * 1000 AS INTEGER)
        WHERE EXISTS (SELECT 1 FROM channel_state);
    "#,
    // 9: was `CREATE INDEX attachments_sha256 ON attachments(sha256)`, for a first cut of
    // retention; it cost every stored attachment a B-tree insert, and retention no longer
    // needs it. Kept as a step that does nothing, so that stores already at 9 still open and
    // a store below 9 does not build the index only for 10 to drop it.
    r#"
    SELECT 1;
    "#,
    // 10: the index 9 made, where it made it.
    r#"
    DROP INDEX IF EXISTS attachments_sha256;
    "#,
    // 11: calendar events in mail, by UID: an invitation, its updates, its cancellation and the
    // answers to it thread together whatever their subjects say.
    r#"
    CREATE TABLE calendar_uids (
        channel_id TEXT NOT NULL,
        uid TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (channel_id, uid, conversation_id)
    ) WITHOUT ROWID;
    "#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    apply(conn, MIGRATIONS)
}

fn apply(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > migrations.len() {
        return Err(StoreError::Schema(format!(
            "database schema version {current} is newer than this binary knows ({}); refusing to open",
            migrations.len()
        )));
    }
    if current == migrations.len() {
        return Ok(());
    }
    // All pending migrations in one transaction: an upgrade that fails half-way leaves the
    // database as the old binary knew it, and a new store is created with one fsync, not one
    // per migration.
    let tx = conn.transaction()?;
    for sql in &migrations[current..] {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", migrations.len()))?;
    tx.commit()?;
    tracing::info!(from = current, to = migrations.len(), "applied store migrations");
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_new_database_gets_every_migration_and_a_second_open_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), super::MIGRATIONS.len() as i64);
        super::migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), super::MIGRATIONS.len() as i64);
    }

    /// A store that an earlier version took to 9, with the index retention's first cut made,
    /// opens, and the index goes; a store from before 9 never gets it.
    #[test]
    fn a_store_at_version_9_opens_and_loses_the_index_it_no_longer_needs() {
        let index = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'attachments_sha256'", [], |r| r.get(0))
                .unwrap()
        };
        let mut conn = Connection::open_in_memory().unwrap();
        super::apply(&mut conn, &super::MIGRATIONS[..8]).unwrap();
        conn.execute_batch("CREATE INDEX attachments_sha256 ON attachments(sha256); PRAGMA user_version = 9;").unwrap();
        super::migrate(&mut conn).unwrap();
        assert_eq!((version(&conn), index(&conn)), (super::MIGRATIONS.len() as i64, 0));

        let mut older = Connection::open_in_memory().unwrap();
        super::apply(&mut older, &super::MIGRATIONS[..8]).unwrap();
        super::migrate(&mut older).unwrap();
        assert_eq!((version(&older), index(&older)), (super::MIGRATIONS.len() as i64, 0));
    }

    /// Pending migrations apply together or not at all: a failing one leaves the database as
    /// the previous version had it.
    #[test]
    fn a_failing_migration_leaves_the_database_at_its_old_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::apply(&mut conn, &["CREATE TABLE a (x)"]).unwrap();
        let upgrade = ["CREATE TABLE a (x)", "CREATE TABLE b (y); INSERT INTO a VALUES (1)", "CREATE TABLE c ("];
        let error = super::apply(&mut conn, &upgrade).unwrap_err();
        assert!(error.to_string().contains("syntax error") || error.to_string().contains("incomplete"), "{error}");
        assert_eq!(version(&conn), 1);
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name IN ('b', 'c')", [], |r| r.get(0)).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!((tables, rows), (0, 0));
        // A newer database than this binary knows is refused, not downgraded.
        let error = super::apply(&mut conn, &[]).unwrap_err();
        assert!(error.to_string().contains("newer than this binary knows"), "{error}");
    }
}
