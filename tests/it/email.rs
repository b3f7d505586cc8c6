//! The email channel end to end: a private Dovecot, a real SMTP server delivering into it, the
//! gateway in between, a webhook receiver as the helpdesk.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::mail_servers::*;

/// A gateway with the `support` mail channel and a helpdesk receiving its webhooks.
async fn with_helpdesk(mail: &MailServers) -> (Receiver, TestServer) {
    with_helpdesk_and(mail, "").await
}

/// `with_helpdesk`, with `extra` (TOML lines) in the channel's block.
async fn with_helpdesk_and(mail: &MailServers, extra: &str) -> (Receiver, TestServer) {
    let helpdesk = Receiver::start().await;
    let server =
        TestServer::start(&format!("{}{}", mail.channel("support", extra), webhook("h", &helpdesk, "[\"1s\"]"))).await;
    (helpdesk, server)
}

/// The n-th message.received (0-based) the helpdesk got.
pub(crate) async fn nth_received(helpdesk: &Receiver, n: usize) -> Value {
    helpdesk
        .wait_until(Duration::from_secs(15), &format!("message.received #{n}"), |r| {
            r.iter().filter(|c| c.answered == 200 && c.event_type() == "message.received").count() > n
        })
        .await;
    helpdesk.events_of("message.received").remove(n)["data"].clone()
}

/// A server without IDLE is polled: mail that arrives after the first import still comes in.
/// IDLE is ended and issued again after `idle_timeout` (29 minutes by default: servers end
/// IDLE at 30), on the same session, and new mail still comes in through the renewed IDLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_is_issued_again_after_idle_timeout_on_the_same_session() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel_with_imap("support", "idle_timeout = \"1s\"")).await;
    // The gateway's folder session: the one that selected INBOX.
    let gateway_sessions =
        || -> Vec<String> { mail.client_sessions().into_iter().filter(|s| s.contains(" SELECT \"INBOX\"")).collect() };
    loop_until(|| async {
        gateway_sessions().first().is_some_and(|s| s.matches(" IDLE\r\n").count() >= 3).then_some(())
    })
    .await;
    let sessions = gateway_sessions();
    assert_eq!(sessions.len(), 1, "renewed without reconnecting: {sessions:?}");
    assert!(sessions[0].matches("DONE\r\n").count() >= 2, "{}", sessions[0]);
    mail.append(SUPPORT, &mail_text("ann@example.org", "After renewals", "renewed@example.org", "", "x")).await;
    assert_eq!(first_received(&server).await["data"]["subject"], "After renewals");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_idle_is_polled() {
    let mail = MailServers::start_without_idle().await;
    let mut probe = mail.login(SUPPORT).await;
    let capabilities = probe.capabilities().await.unwrap();
    assert!(!capabilities.has_str("IDLE"), "the test server still offers IDLE");
    assert!(capabilities.has_str("UIDPLUS"));
    probe.logout().await.unwrap();

    mail.append(SUPPORT, &mail_text("ann@example.org", "First", "p1@example.org", "", "Before start")).await;
    let config = mail.channel_with_imap("support", "poll_interval = \"300ms\"");
    let server = TestServer::start(&config).await;
    let subjects = || async {
        let events = server.all_events().await;
        events
            .iter()
            .filter(|e| e["type"] == "message.received")
            .map(|e| e["data"]["subject"].clone())
            .collect::<Vec<_>>()
    };
    loop_until(|| async { (subjects().await.len() == 1).then_some(()) }).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Second", "p2@example.org", "", "While running")).await;
    loop_until(|| async { (subjects().await.len() == 2).then_some(()) }).await;
    assert_eq!(subjects().await, vec![json!("First"), json!("Second")]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_reply_out_and_the_thread_holds() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;

    // A customer writes in.
    mail.append(
        SUPPORT,
        &mail_text("Ann <ann@example.org>", "Invoice 42", "first@example.org", "", "Hello, where is my invoice?"),
    )
    .await;
    let first = nth_received(&helpdesk, 0).await;
    assert_eq!(first["channel"], json!({"id": "support", "type": "email"}));
    assert_eq!(first["from"], json!({"address": "ann@example.org", "name": "Ann"}));
    assert_eq!(first["subject"], "Invoice 42");
    assert_eq!(first["reply_text"], "Hello, where is my invoice?");
    assert_eq!(first["provider"]["message_id"], "first@example.org");
    assert_eq!(first["stitch"]["reason"], "new");
    assert_eq!(first["sent_at"], "2026-11-23T10:00:00.000Z", "the mail's Date, in UTC");
    // Fetching did not mark it read.
    let inbox = mail.inbox(SUPPORT).await;
    assert!(inbox[0].1.iter().all(|f| !f.contains("Seen")), "{:?}", inbox[0].1);

    // The helpdesk replies; the mail reaches Ann's mailbox through the SMTP server.
    let cnv = first["conversation_id"].as_str().unwrap();
    let (code, queued) = server.post("/v1/messages", json!({"conversation_id": cnv, "text": "Attached.", "html": "<p>Attached.</p>",
        "attachments": [{"filename": "invoice.txt", "content_type": "text/plain", "content_base64": "SW52b2ljZSA0Mg=="}]})).await;
    assert_eq!(code, 202, "{queued}");
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let our_id = sent["provider"]["message_id"].as_str().unwrap().to_owned();
    assert!(our_id.starts_with(&format!("{}.{cnv}@example.com", queued["id"].as_str().unwrap())), "{our_id}");
    let delivered = loop_until(|| async { mail.inbox(ANN).await.pop() }).await;
    let raw = String::from_utf8_lossy(&delivered.2).to_string();
    assert!(raw.contains(&format!("Message-ID: <{our_id}>")), "{raw}");
    assert!(raw.contains("In-Reply-To: <first@example.org>"), "{raw}");
    assert!(raw.contains("References: <first@example.org>"), "{raw}");
    assert!(raw.contains("Subject: Re: Invoice 42"), "{raw}");
    assert!(raw.contains("From: \"Example Support\" <support@example.com>"), "{raw}");
    assert!(raw.contains("multipart/alternative") && raw.contains("<p>Attached.</p>"), "{raw}");
    let attachment = &raw[raw.find("filename=\"invoice.txt\"").expect("the attachment part")..];
    // Files go base64, text ones too (bare line feeds never reach SMTP): "Invoice 42".
    assert!(
        attachment.contains("Content-Transfer-Encoding: base64") && attachment.contains("SW52b2ljZSA0Mg=="),
        "{raw}"
    );

    // Ann answers from Outlook: In-Reply-To only, no References, subject changed.
    mail.append(SUPPORT, &mail_text("Ann <ann@example.org>", "RE: thanks", "second@example.org", &format!("In-Reply-To: <{our_id}>\n"),
        "Thanks!\n\nFrom: Example Support <support@example.com>\nSent: Monday, November 23, 2026 10:00\nTo: Ann\n\nAttached.")).await;
    let second = nth_received(&helpdesk, 1).await;
    assert_eq!(second["conversation_id"], cnv);
    assert_eq!(second["stitch"]["reason"], "in_reply_to");
    assert_eq!(second["reply_text"], "Thanks!");
    assert_eq!(second["in_reply_to"], queued["id"], "the message it answers, by our id");
    assert_eq!(first["in_reply_to"], Value::Null);

    // A client that drops In-Reply-To but keeps References.
    mail.append(
        SUPPORT,
        &mail_text(
            "ann@example.org",
            "Re: Invoice 42",
            "third@example.org",
            &format!("References: <first@example.org> <{our_id}>\n"),
            "One more thing",
        ),
    )
    .await;
    let third = nth_received(&helpdesk, 2).await;
    assert_eq!(
        (third["conversation_id"].as_str(), third["stitch"]["reason"].as_str()),
        (Some(cnv), Some("references"))
    );
    assert_eq!(third["in_reply_to"], queued["id"], "the newest of its References");

    // A stranger replying to the same thread (a forward) starts their own conversation.
    mail.append(
        SUPPORT,
        &mail_text(
            "stranger@example.net",
            "Re: Invoice 42",
            "fourth@example.net",
            &format!("In-Reply-To: <{our_id}>\nReferences: <first@example.org> <{our_id}>\n"),
            "I got this forwarded",
        ),
    )
    .await;
    let fourth = nth_received(&helpdesk, 3).await;
    assert_ne!(fourth["conversation_id"], cnv);
    assert_eq!(fourth["stitch"]["reason"], "new");

    // Same subject from Ann without any threading headers: joined by subject.
    mail.append(SUPPORT, &mail_text("ann@example.org", "Fwd: Invoice 42", "fifth@example.org", "", "Forgot this"))
        .await;
    let fifth = nth_received(&helpdesk, 4).await;
    assert_eq!((fifth["conversation_id"].as_str(), fifth["stitch"]["reason"].as_str()), (Some(cnv), Some("subject")));
    assert_eq!((fourth["in_reply_to"].clone(), fifth["in_reply_to"].clone()), (Value::Null, Value::Null));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_import_loses_nothing_duplicates_nothing_and_deleted_mail_stays_gone() {
    let mail = MailServers::start().await;
    for i in 0..40 {
        mail.append(
            SUPPORT,
            &mail_text(
                &format!("c{i}@example.org"),
                &format!("Question {i}"),
                &format!("q{i}@example.org"),
                "",
                &format!("Body {i}"),
            ),
        )
        .await;
    }
    let config = mail.channel("support", "");
    let server = TestServer::start(&config).await;
    // Stop as soon as some, not all, are in.
    loop {
        let n = server.all_events().await.iter().filter(|e| e["type"] == "message.received").count();
        if n >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    let received = loop_until(|| async {
        let events = server.all_events().await;
        let received: Vec<Value> = events.into_iter().filter(|e| e["type"] == "message.received").collect();
        (received.len() >= 40).then_some(received)
    })
    .await;
    let mut ids: Vec<String> =
        received.iter().map(|e| e["data"]["provider"]["message_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((received.len(), ids.len()), (40, 40), "every mail exactly once");

    // Deleted on the server after import, then a new mail: only the new one comes in.
    mail.delete_all(SUPPORT).await;
    mail.append(SUPPORT, &mail_text("late@example.org", "Late", "late@example.org", "", "After the purge")).await;
    let received = loop_until(|| async {
        let events = server.all_events().await;
        let r: Vec<Value> = events.into_iter().filter(|e| e["type"] == "message.received").collect();
        (r.len() >= 41).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: usize = server.all_events().await.iter().filter(|e| e["type"] == "message.received").count();
    assert_eq!((received.len(), after), (41, 41));
    assert_eq!(received[40]["data"]["subject"], "Late");

    // A restart now re-imports nothing.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after: usize = server.all_events().await.iter().filter(|e| e["type"] == "message.received").count();
    assert_eq!(after, 41);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_the_imap_loop_without_loss_or_duplicates() {
    let mail = MailServers::start().await;
    for i in 0..40 {
        let text = mail_text(&format!("c{i}@example.org"), &format!("Q{i}"), &format!("r{i}@example.org"), "", "Hi");
        mail.append(SUPPORT, &text).await;
    }
    let mut server = TestServer::start(&mail.channel("support", "")).await;
    loop_until(|| async { (count(&server).await >= 5).then_some(()) }).await;
    // A changed channel: its IMAP loop is stopped after its current batch and started again.
    let reloaded = server.reload(&mail.channel("support", "subject_window = \"7d\"")).await;
    assert_eq!(reloaded.applied, vec!["channel `support` reconfigured".to_owned()]);
    mail.append(SUPPORT, &mail_text("late@example.org", "Late", "late@example.org", "", "After the reload")).await;
    let received = loop_until(|| async {
        let events = server.all_events().await;
        let r: Vec<Value> = events.into_iter().filter(|e| e["type"] == "message.received").collect();
        (r.len() >= 41).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<String> =
        received.iter().map(|e| e["data"]["provider"]["message_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), count(&server).await), (41, 41), "every mail exactly once");
    // An unchanged config changes nothing.
    let reloaded = server.reload(&mail.channel("support", "subject_window = \"7d\"")).await;
    assert!(reloaded.applied.is_empty() && reloaded.restart_needed.is_empty(), "{reloaded:?}");
    server.stop().await;
}

/// Makes Dovecot assign the support INBOX a new UIDVALIDITY (its uid list and indexes gone). A
/// UIDVALIDITY made up in the same second as the old one can equal it: then again, a second
/// later.
async fn force_new_uidvalidity(mail: &MailServers) {
    let validity = || async {
        let mut session = mail.login(SUPPORT).await;
        let validity = session.select("INBOX").await.unwrap().uid_validity;
        session.logout().await.unwrap();
        validity
    };
    let old = validity().await;
    let maildir = mail.dir.path().join("mail").join(SUPPORT.0);
    for _ in 0..5 {
        for entry in std::fs::read_dir(&maildir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with("dovecot") {
                let _ = std::fs::remove_file(maildir.join(&name));
            }
        }
        if validity().await != old {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    panic!("Dovecot kept UIDVALIDITY {old:?}");
}

/// The subjects of every message.received event so far, sorted.
/// The first `message.received` event, once there is one.
async fn first_received(server: &TestServer) -> Value {
    loop_until(|| async { server.all_events().await.into_iter().find(|e| e["type"] == "message.received") }).await
}

/// An agent writes to a customer whose domain is internationalised, typing it in Unicode: the
/// mail goes out with the domain in A-labels (the test's SMTP server, aiosmtpd, offers no
/// SMTPUTF8 and refuses it in Unicode, as many servers do) and reaches her; her answer, whose
/// From names the domain in A-labels, is the same contact's and joins the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_in_an_internationalised_domain_is_written_to_and_answered_as_one_person() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (status, queued) = server
        .post(
            "/v1/messages",
            json!({"channel": "support", "to": "Daria@Bücher.example", "subject": "Ihre Bestellung", "text": "Guten Tag"}),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let delivered = loop_until(|| async { mail.inbox(DARIA).await.pop() }).await;
    let source = String::from_utf8_lossy(&delivered.2).into_owned();
    assert!(source.contains("To: Daria@xn--bcher-kva.example"), "{source}");
    let ours = source.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap().trim().to_owned();

    let answer = crate::mail_servers::mail(
        DARIA.0,
        SUPPORT.0,
        "Re: Ihre Bestellung",
        "daria-1@xn--bcher-kva.example",
        &format!("In-Reply-To: {ours}\n"),
        "Danke",
    );
    mail.append(SUPPORT, &answer).await;
    let received = first_received(&server).await;
    let data = &received["data"];
    assert_eq!(
        (&data["conversation_id"], &data["contact_id"]),
        (&sent["conversation_id"], &sent["contact_id"]),
        "{data}"
    );
    assert_eq!(data["stitch"]["reason"], "in_reply_to");
    server.stop().await;
}

/// The test mail servers with a private Postfix in front, and a gateway sending through it.
/// Posts `body` to /v1/messages and waits until the message is sent and in Ann's mailbox;
/// returns the accepted message and the mail as Ann's server stored it.
pub(crate) async fn send_to_ann(server: &TestServer, mail: &MailServers, body: Value) -> (Value, Vec<u8>) {
    let (status, queued) = server.post("/v1/messages", body).await;
    assert_eq!(status, 202, "{queued}");
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let delivered = loop_until(|| async { mail.inbox(ANN).await.pop() }).await;
    (queued, delivered.2)
}

async fn through_postfix() -> (MailServers, Postfix, TestServer) {
    let mail = MailServers::start().await;
    let postfix = mail.start_postfix().await;
    let server = TestServer::start(&mail.channel_via_mta("support", postfix.port)).await;
    (mail, postfix, server)
}

async fn received_subjects(server: &TestServer) -> Vec<String> {
    let mut subjects: Vec<String> = server
        .all_events()
        .await
        .iter()
        .filter(|e| e["type"] == "message.received")
        .map(|e| e["data"]["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    subjects.sort();
    subjects
}

/// `import_existing = false`: the mail already in the folder stays out, mail arriving after the
/// first start comes in, and neither a restart nor a UIDVALIDITY resync brings the old mail in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_import_existing_off_only_mail_from_the_first_start_on_is_imported() {
    let mail = MailServers::start().await;
    for i in 0..2 {
        let old = mail_text("a@example.org", &format!("Old {i}"), &format!("old{i}@example.org"), "", "x");
        mail.append_received(SUPPORT, &old, Some("01-Jan-2020 10:00:00 +0000")).await;
    }
    let config = mail.channel_with_imap("support", "import_existing = false");
    let server = TestServer::start(&config).await;
    // The gateway has selected the folder (the test's own sessions only APPEND): mail appended
    // from now on is above the UIDNEXT it was told.
    loop_until(|| async { mail.server_responses().contains("[UIDNEXT ").then_some(()) }).await;
    mail.append(SUPPORT, &mail_text("a@example.org", "New 1", "new1@example.org", "", "x")).await;
    loop_until(|| async { (received_subjects(&server).await.len() == 1).then_some(()) }).await;
    let dir = server.stop().await;

    // A restart resumes from the checkpoint; a UIDVALIDITY change re-reads the folder, but only
    // from the day before the first start. First a resync that finds nothing (New 1, the only
    // recent mail, deleted on the server): the rounds after it must not read the old mail.
    {
        let mut session = mail.login(SUPPORT).await;
        session.select("INBOX").await.unwrap();
        let new1: Vec<String> =
            session.search("SUBJECT \"New 1\"").await.unwrap().into_iter().map(|n| n.to_string()).collect();
        assert_eq!(new1.len(), 1);
        let flagged = session.store(new1.join(","), "+FLAGS (\\Deleted)").await.unwrap();
        futures_util::TryStreamExt::try_collect::<Vec<_>>(flagged).await.unwrap();
        let expunged = session.expunge().await.unwrap();
        futures_util::TryStreamExt::try_collect::<Vec<_>>(expunged).await.unwrap();
        session.logout().await.unwrap();
    }
    force_new_uidvalidity(&mail).await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async { mail.client_commands().contains(" SINCE ").then_some(()) }).await;
    mail.append(SUPPORT, &mail_text("a@example.org", "New 2", "new2@example.org", "", "x")).await;
    loop_until(|| async { (received_subjects(&server).await.len() >= 2).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received_subjects(&server).await, vec!["New 1", "New 2"]);
    let dir = server.stop().await;

    // Then a resync that finds new mail.
    force_new_uidvalidity(&mail).await;
    mail.append(SUPPORT, &mail_text("a@example.org", "New 3", "new3@example.org", "", "x")).await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async { (received_subjects(&server).await.len() >= 3).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received_subjects(&server).await, vec!["New 1", "New 2", "New 3"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_resyncs_without_duplicates() {
    let mail = MailServers::start().await;
    for i in 0..3 {
        mail.append(SUPPORT, &mail_text("a@example.org", &format!("S{i}"), &format!("s{i}@example.org"), "", "x"))
            .await;
    }
    let config = mail.channel("support", "");
    let server = TestServer::start(&config).await;
    loop_until(|| async {
        (server.all_events().await.iter().filter(|e| e["type"] == "message.received").count() == 3).then_some(())
    })
    .await;
    let dir = server.stop().await;
    force_new_uidvalidity(&mail).await;
    mail.append(SUPPORT, &mail_text("a@example.org", "S3", "s3@example.org", "", "x")).await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async {
        (server.all_events().await.iter().filter(|e| e["type"] == "message.received").count() >= 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = server.all_events().await.iter().filter(|e| e["type"] == "message.received").count();
    assert_eq!(received, 4, "the resync recognised the three already imported");
    server.stop().await;
    let searches = mail.client_commands().matches("UID SEARCH UID 1:*").count();
    assert_eq!(searches, 2, "the first import and the resync both read the folder from UID 1");
}

/// The channel is pointed at another mailbox (its IMAP username changed) whose INBOX has the
/// UIDVALIDITY of the old one's, as servers that number UIDVALIDITY give many mailboxes: the old
/// mailbox's checkpoint would have skipped as many of the new one's mails, silently. The folder
/// is read again from the start, and a mail already imported from the old one is recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_pointed_at_another_mailbox_reads_it_whole() {
    let mail = MailServers::start().await;
    let shared = mail_text("a@example.org", "Both", "both@example.org", "", "In both mailboxes");
    mail.append(SUPPORT, &shared).await;
    for i in 0..3 {
        mail.append(SUPPORT, &mail_text("a@example.org", &format!("Old {i}"), &format!("old{i}@example.org"), "", "x"))
            .await;
    }
    let config = mail.channel("support", "");
    let server = TestServer::start(&config).await;
    loop_until(|| async { (count(&server).await == 4).then_some(()) }).await;
    let dir = server.stop().await;

    mail.append(ANN, &shared).await;
    for i in 0..3 {
        mail.append(ANN, &mail_text("b@example.org", &format!("New {i}"), &format!("new{i}@example.org"), "", "y"))
            .await;
    }
    mail.set_uid_validity(ANN, mail.uid_validity(SUPPORT).await);
    assert_eq!(mail.uid_validity(ANN).await, mail.uid_validity(SUPPORT).await);
    let support_login = format!("username = \"{}\"\npassword = \"{}\"", SUPPORT.0, SUPPORT.1);
    let ann_login = format!("username = \"{}\"\npassword = \"{}\"", ANN.0, ANN.1);
    let moved = config.replacen(&support_login, &ann_login, 1);
    assert_ne!(moved, config);
    let server = TestServer::start_in(dir, &moved).await;
    loop_until(|| async { (count(&server).await >= 7).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        received_subjects(&server).await,
        ["Both", "New 0", "New 1", "New 2", "Old 0", "Old 1", "Old 2"],
        "Ann's three new mails, and the shared one once"
    );
    server.stop().await;
}

/// A server that accepts the connection and then says nothing (a hung server, a stalled proxy):
/// the channel gives up after `[channels.imap] timeout`, reports it (`imap_timeout`) and tries
/// again, instead of waiting for ever with /readyz none the wiser; `check --connect` says the
/// same and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imap_server_that_says_nothing_is_given_up_after_the_timeout() {
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tarpit.local_addr().unwrap().port();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = tarpit.accept().await {
            held.push(socket); // open, and silent
            let _ = accepted_tx.send(());
        }
    });
    let channel = format!(
        "[[channels]]\nid = \"support\"\ntype = \"email\"\naddress = \"support@example.com\"\n[channels.imap]\n\
         host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"support@example.com\"\npassword = \"x\"\n\
         timeout = \"1s\"\n"
    );
    let helpdesk = Receiver::start().await;
    let server = TestServer::start(&format!("{channel}{}", webhook("h", &helpdesk, "[\"1s\"]"))).await;
    let event = helpdesk.expect_event("channel.error").await;
    assert_eq!(event["data"]["error"]["code"], "imap_timeout", "{event}");
    let message = event["data"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("no answer to connecting and logging in within 1s"), "{message}");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    // Given up and tried again: a second connection.
    for _ in 0..2 {
        accepted.recv().await.unwrap();
    }
    server.stop().await;

    let (code, text) = check_connect(&channel);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(": FAILED, ") && text.contains("no answer to connecting and logging in within 1s"), "{text}");
}

/// A server that stops in the middle of a FETCH (here a proxy in front of the real Dovecot that
/// passes on a little of the first mail's body and then nothing, connection open): the read is
/// given up after `[channels.imap] timeout` of silence, reported (`imap_timeout`), and the mail
/// comes in on the next connection. IDLE, silent for longer than that, is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_in_the_middle_of_a_fetch_is_given_up_and_the_mail_still_comes() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mail = MailServers::start().await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let (dovecot, connections) = (mail.imap_port, Arc::new(AtomicUsize::new(0)));
    let counted = connections.clone();
    tokio::spawn(async move {
        let stalled_once = Arc::new(AtomicBool::new(false));
        while let Ok((client, _)) = proxy.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let server = tokio::net::TcpStream::connect(("127.0.0.1", dovecot)).await.unwrap();
            let ((mut client_read, mut client_write), (mut server_read, mut server_write)) =
                (client.into_split(), server.into_split());
            // Set when this connection asks for a body and no connection has stalled yet.
            let stall = Arc::new(AtomicBool::new(false));
            let (asked, once) = (stall.clone(), stalled_once.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                    if String::from_utf8_lossy(&buf[..n]).contains("BODY.PEEK[]") && !once.swap(true, Ordering::SeqCst)
                    {
                        asked.store(true, Ordering::SeqCst);
                    }
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                    if stall.load(Ordering::SeqCst) {
                        let _ = client_write.write_all(&buf[..n.min(40)]).await;
                        std::future::pending::<()>().await; // open, and silent
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let channel = mail
        .channel("support", "")
        .replace(&format!("port = {dovecot}\n"), &format!("port = {proxy_port}\ntimeout = \"2s\"\n"));
    assert!(channel.contains("timeout = \"2s\""), "{channel}");
    mail.append(SUPPORT, &mail_text("ann@example.org", "Stalled", "stalled@example.org", "", "Hello")).await;
    let helpdesk = Receiver::start().await;
    let server = TestServer::start(&format!("{channel}{}", webhook("h", &helpdesk, "[\"1s\"]"))).await;
    let error = helpdesk.expect_event("channel.error").await;
    assert_eq!(error["data"]["error"]["code"], "imap_timeout", "{error}");
    let message = error["data"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("sent nothing for 2s in the middle of a response"), "{message}");
    let first = nth_received(&helpdesk, 0).await;
    assert_eq!(first["subject"], "Stalled");
    assert!(connections.load(Ordering::SeqCst) >= 2, "given up and connected again");
    // Quiet for longer than the timeout in IDLE: the session stays, and new mail still comes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = connections.load(Ordering::SeqCst);
    mail.append(SUPPORT, &mail_text("ann@example.org", "After", "after@example.org", "", "Again")).await;
    let second = nth_received(&helpdesk, 1).await;
    assert_eq!(second["subject"], "After");
    assert_eq!(connections.load(Ordering::SeqCst), before, "IDLE was not cut for its silence");
    assert_eq!(helpdesk.events_of("channel.error").len(), 1, "one stall, one error");
    assert_eq!(count(&server).await, 2);
    server.stop().await;
}

/// A proxy in front of the test Dovecot that holds the gateway's first command containing
/// `needle` (its first body FETCH, its first MOVE) until `release`: what another client does
/// meanwhile happens just before that command.
pub(crate) struct CommandHold {
    pub(crate) port: u16,
    held: tokio::sync::mpsc::UnboundedReceiver<()>,
    pub(crate) release: std::sync::Arc<tokio::sync::Notify>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CommandHold {
    pub(crate) async fn start(dovecot: u16, needle: &'static str) -> CommandHold {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = proxy.local_addr().unwrap().port();
        let (held_tx, held) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (release, connections) = (Arc::new(tokio::sync::Notify::new()), Arc::new(AtomicUsize::new(0)));
        let (released, counted) = (release.clone(), connections.clone());
        tokio::spawn(async move {
            let held_once = Arc::new(AtomicUsize::new(0));
            while let Ok((client, _)) = proxy.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::TcpStream::connect(("127.0.0.1", dovecot)).await.unwrap();
                let ((mut client_read, mut client_write), (mut server_read, mut server_write)) =
                    (client.into_split(), server.into_split());
                let (held_tx, released, held_once) = (held_tx.clone(), released.clone(), held_once.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        let asked = String::from_utf8_lossy(&buf[..n]).contains(needle);
                        if asked && held_once.fetch_add(1, Ordering::SeqCst) == 0 {
                            let _ = held_tx.send(());
                            released.notified().await;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
            }
        });
        CommandHold { port, held, release, connections }
    }

    /// Waits until the gateway's command is held.
    pub(crate) async fn holding(&mut self) {
        tokio::time::timeout(Duration::from_secs(15), self.held.recv()).await.expect("the gateway sends it").unwrap();
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The gateway with the `support` channel (`imap`: more of its IMAP settings) reading the test
/// Dovecot through `hold`, and a helpdesk.
async fn through_hold(mail: &MailServers, hold: &CommandHold, imap: &str) -> (Receiver, TestServer) {
    let dovecot = format!("port = {}\n", mail.imap_port);
    let channel = mail.channel_with_imap("support", imap).replace(&dovecot, &format!("port = {}\n", hold.port));
    let helpdesk = Receiver::start().await;
    let server = TestServer::start(&format!("{channel}{}", webhook("h", &helpdesk, "[\"1s\"]"))).await;
    (helpdesk, server)
}

/// Another client deletes a mail between the gateway's SEARCH and its FETCH (an Outlook rule
/// moving mail as it arrives, an agent deleting spam): Dovecot answers the FETCH with that mail's
/// body as NIL. The mail is gone, not broken: the others of the batch come in, nothing is
/// reported, the session stays, and the mail is not asked for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_deleted_by_another_client_while_it_is_fetched_is_passed_over_quietly() {
    let mail = MailServers::start().await;
    let mut hold = CommandHold::start(mail.imap_port, "BODY.PEEK[])").await;
    for (subject, id) in [("Kept 1", "k1@example.org"), ("Spam", "spam@example.org"), ("Kept 2", "k2@example.org")] {
        mail.append(SUPPORT, &mail_text(ANN.0, subject, id, "", "x")).await;
    }
    let (helpdesk, server) = through_hold(&mail, &hold, "").await;
    hold.holding().await;
    let mut other = mail.login(SUPPORT).await;
    delete(&mut other, "INBOX", "2").await;
    other.logout().await.unwrap();
    hold.release.notify_one();
    nth_received(&helpdesk, 1).await;
    // Two conversations: the helpdesk may get them in either order.
    let mut subjects: Vec<String> = received(&server).await.iter().map(|m| m["subject"].to_string()).collect();
    subjects.sort();
    assert_eq!(subjects, ["\"Kept 1\"", "\"Kept 2\""]);
    assert!(mail.server_responses().contains("BODY[] NIL"), "Dovecot answered the deleted mail's body as NIL");
    mail.append(SUPPORT, &mail_text(ANN.0, "Later", "later@example.org", "", "x")).await;
    assert_eq!(nth_received(&helpdesk, 2).await["subject"], "Later");
    assert_eq!(helpdesk.events_of("channel.error"), Vec::<Value>::new());
    assert_eq!(hold.connections(), 1, "the session stayed");
    assert_eq!(count(&server).await, 3);
    server.stop().await;
}

/// New mail arrives while the gateway fetches what its SEARCH found, and an agent reads a mail
/// of the shared mailbox meanwhile: the server tells of both in answer to that FETCH (the flag
/// change, and an EXISTS), before the session waits in IDLE, and does not tell again in IDLE.
/// The gateway looks again before it waits: the mail comes at once, not with the next mail or
/// the next IDLE renewal (up to 29 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_told_of_while_a_fetch_runs_is_not_left_waiting_for_the_next_idle() {
    let mail = MailServers::start().await;
    let mut hold = CommandHold::start(mail.imap_port, "BODY.PEEK[])").await;
    mail.append(SUPPORT, &mail_text(ANN.0, "First", "first@example.org", "", "x")).await;
    mail.append(SUPPORT, &mail_text(BEA.0, "Read", "read@example.org", "", "x")).await;
    let (helpdesk, server) = through_hold(&mail, &hold, "").await;
    hold.holding().await;
    let mut agent = mail.login(SUPPORT).await;
    agent.select("INBOX").await.unwrap();
    let _: Vec<_> =
        futures_util::TryStreamExt::try_collect(agent.uid_store("2", "+FLAGS (\\Seen)").await.unwrap()).await.unwrap();
    agent.logout().await.unwrap();
    mail.append(SUPPORT, &mail_text(CARL.0, "During", "during@example.org", "", "x")).await;
    hold.release.notify_one();
    nth_received(&helpdesk, 2).await;
    let mut subjects: Vec<String> = received(&server).await.iter().map(|m| m["subject"].to_string()).collect();
    subjects.sort();
    assert_eq!(subjects, ["\"During\"", "\"First\"", "\"Read\""]);
    assert_eq!(hold.connections(), 1, "on the same session, without a reconnect");
    server.stop().await;
}

/// Another client deletes a mail after the gateway fetched it and before `after_import` moves
/// it: Dovecot refuses the MOVE (`NO [EXPUNGEISSUED]`). The deleted mail needs no moving: once
/// the session has heard of the deletion, the rest are moved, nothing is reported, and the
/// session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_deleted_before_it_is_moved_does_not_stop_the_move_of_the_rest() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Archive"]).await;
    let mut hold = CommandHold::start(mail.imap_port, "UID MOVE").await;
    for (subject, id) in [("Deleted", "deleted@example.org"), ("Moved", "moved@example.org")] {
        mail.append(SUPPORT, &mail_text(ANN.0, subject, id, "", "x")).await;
    }
    let (helpdesk, server) = through_hold(&mail, &hold, "after_import = \"move:Archive\"").await;
    hold.holding().await;
    mail.delete_all_but(SUPPORT, "moved@example.org").await;
    hold.release.notify_one();
    nth_received(&helpdesk, 1).await;
    loop_until(|| async { mail.inbox(SUPPORT).await.is_empty().then_some(()) }).await;
    let mut session = mail.login(SUPPORT).await;
    let (archived, _) = mails_in(&mut session, "Archive").await;
    session.logout().await.unwrap();
    assert_eq!(archived.len(), 1);
    assert!(String::from_utf8_lossy(&archived[0].2).contains("moved@example.org"));
    assert!(mail.server_responses().contains("EXPUNGEISSUED"), "Dovecot refused the first MOVE");
    mail.append(SUPPORT, &mail_text(ANN.0, "Later", "later@example.org", "", "x")).await;
    nth_received(&helpdesk, 2).await;
    assert_eq!(helpdesk.events_of("channel.error"), Vec::<Value>::new());
    assert_eq!(hold.connections(), 1, "the session stayed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_reported_and_do_not_stop_other_channels() {
    let mail = MailServers::start().await;
    let helpdesk = Receiver::start().await;
    let broken = mail.channel("support", "").replace(SUPPORT.1, "wrong-password");
    let server =
        TestServer::start(&format!("{broken}{}{}", api_channel("web", None, ""), webhook("h", &helpdesk, "[\"1s\"]")))
            .await;
    let event = helpdesk.expect_event("channel.error").await;
    assert_eq!(event["data"]["channel"], json!({"id": "support", "type": "email"}));
    assert_eq!(event["data"]["error"]["code"], "imap_auth");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    assert!(ready["checks"]["channel:support"].as_str().unwrap().starts_with("error: imap_auth"), "{ready}");
    let (code, _) = server.inbound("web", json!({"from": {"address": "v"}, "text": "still works"})).await;
    assert_eq!(code, 202);
    server.stop().await;
}

/// A folder that does not exist (a typo in `folders`) is reported by name while the other
/// folders import; the working folder's reconnects do not clear it, and a reload that fixes the
/// list makes the gateway ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_folder_is_reported_by_name_and_the_other_folders_still_import() {
    let mail = MailServers::start().await;
    let helpdesk = Receiver::start().await;
    let hook = webhook("h", &helpdesk, "[\"1s\"]");
    let config =
        |folders: &str| format!("{}{hook}", mail.channel_with_imap("support", &format!("folders = {folders}")));
    let mut server = TestServer::start(&config(r#"["INBOX", "Archiv"]"#)).await;
    let event = helpdesk.expect_event("channel.error").await;
    assert!(event["data"]["error"]["message"].as_str().unwrap().starts_with("Archiv: "), "{event}");
    mail.append(SUPPORT, &mail_text("a@example.org", "Still here", "still@example.org", "", "x")).await;
    assert_eq!(first_received(&server).await["data"]["subject"], "Still here");

    // INBOX's session ends and opens again (as after a dropped connection): Archiv still fails.
    mail.kick(SUPPORT.0);
    loop_until(|| async { (mail.server_responses().matches("[UIDNEXT ").count() >= 2).then_some(()) }).await;
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    let check = ready["checks"]["channel:support"].as_str().unwrap();
    assert!(check.starts_with("error: imap_protocol: Archiv: "), "{ready}");

    server.reload(&config(r#"["INBOX"]"#)).await;
    loop_until(|| async {
        let (code, _) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        (code == 200).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_smtp_login_is_reported_and_the_mail_waits_for_fixed_credentials() {
    let mail = MailServers::start().await;
    let helpdesk = Receiver::start().await;
    let hooks = webhook("h", &helpdesk, "[\"1s\"]");
    let good = mail.channel("support", "");
    // Only the SMTP password is wrong: receiving keeps working.
    let smtp = good.find("[channels.smtp]").unwrap();
    let broken = format!("{}{}", &good[..smtp], good[smtp..].replace(SUPPORT.1, "wrong-password"));
    let mut server = TestServer::start(&format!("{broken}{hooks}")).await;
    let (_, queued) = server
        .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Hi", "text": "waits for a login"}))
        .await;
    let id = queued["id"].as_str().unwrap();

    let event = helpdesk.expect_event("channel.error").await;
    assert_eq!(event["data"]["channel"], json!({"id": "support", "type": "email"}), "{event}");
    assert_eq!(event["data"]["direction"], "outbound", "{event}");
    assert_eq!(event["data"]["error"]["code"], "smtp_535", "{event}");
    server.validate_contract(vec![json!({"schema": "Event", "instance": event})]).await;
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    assert!(ready["checks"]["channel:support/send"].as_str().unwrap().starts_with("error: smtp_535"), "{ready}");
    let (_, waiting) = server.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(waiting["status"], "queued", "a refused login does not fail the mail: {waiting}");
    mail.append(SUPPORT, &mail_text("ann@example.org", "Still in", "in-1@example.org", "", "received")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;
    let (_, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready["checks"]["channel:support"], "ok", "IMAP logs in fine: {ready}");

    // Fixed credentials: the waiting mail goes out at once and the channel is ready again.
    server.reload(&format!("{good}{hooks}")).await;
    server.wait_status(id, "sent").await;
    assert!(String::from_utf8_lossy(&loop_until(|| async { mail.inbox(ANN).await.pop() }).await.2)
        .contains("waits for a login"));
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["checks"]["channel:support/send"], "ok", "{ready}");
    assert_eq!(helpdesk.events_of("channel.error").len(), 1, "one event for the failure, not one per retry");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mime_keeps_what_parsed_and_the_exact_source() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    // A multipart that never closes, whose second part is not base64 at all.
    let broken = "From: Bob <bob@example.org>\nTo: support@example.com\nSubject: Broken\nMessage-ID: <broken-1@example.org>\n\
        MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\nContent-Type: text/plain; charset=utf-8\n\n\
        The text survives.\n--XX\nContent-Type: application/pdf; name=\"cut.pdf\"\nContent-Transfer-Encoding: base64\n\n\
        JVBERi0xLjQK%%% not base64, and no closing boundary\n";
    mail.append(SUPPORT, broken).await;
    let received = nth_received(&helpdesk, 0).await;
    assert!(received["text"].as_str().unwrap().contains("The text survives."), "{received}");
    let source = &received["source"];
    assert_eq!((&source["filename"], &source["content_type"]), (&json!("message.eml"), &json!("message/rfc822")));
    let served = mail.inbox(SUPPORT).await.pop().unwrap().2;
    assert_eq!(source["size"], served.len(), "{source}");
    let response = server.http.get(source["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), served, "the source is the mail exactly as fetched");
    server.validate_contract(vec![json!({"schema": "Message", "instance": received})]).await;
    server.stop().await;
}

/// A Polish customer forwards an invoice and the courier's mail (as an attachment) from
/// Outlook: the downloads carry their names as he sees them — UTF-8 in RFC 6266's
/// `filename*`, as Werkzeug (Flask's HTTP library) reads them back, with an ASCII stand-in —
/// and the forwarded mail is named after its subject. (A raw UTF-8 name reached most clients
/// as Latin-1 mojibake.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_names_in_any_language_download_as_written() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    append_fixture(&mail, "outlook-forward-as-attachment-pl").await;
    let received = nth_received(&helpdesk, 0).await;
    let attachments = received["attachments"].as_array().unwrap();
    let names: Vec<&str> = attachments.iter().map(|a| a["filename"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Faktura nr 12/2026 — zamówienie.pdf", "Potwierdzenie odbioru żółte.pdf", "Przesyłka uszkodzona.eml"]
    );
    let mut dispositions = Vec::new();
    for attachment in attachments {
        let response = server.http.get(attachment["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(disposition.is_ascii(), "{disposition}");
        assert_eq!(response.bytes().await.unwrap().len() as u64, attachment["size"].as_u64().unwrap());
        dispositions.push(disposition);
    }
    assert_eq!(
        dispositions[0],
        "attachment; filename=\"Faktura nr 12_2026 _ zam_wienie.pdf\"; \
         filename*=UTF-8''Faktura%20nr%2012%2F2026%20%E2%80%94%20zam%C3%B3wienie.pdf"
    );
    let read_back: Vec<String> =
        serde_json::from_str(&python("content_disposition.py", &[], &json!(dispositions))).unwrap();
    assert_eq!(read_back, names);
    server.stop().await;
}

/// A support address that is a Google Group relays every customer's mail with `Precedence:
/// list` and the group's List-* headers (osTicket#5791: every such mail counted as automatic).
/// Our own list says nothing about the sender: the mail opens a conversation and is answered;
/// a newsletter from someone else's list is still automatic and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_relayed_by_our_own_google_group_is_a_customers() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    append_fixture(&mail, "google-groups-relay").await;
    let received = nth_received(&helpdesk, 0).await;
    assert_eq!(received["from"]["address"], ANN.0);
    assert_ne!(received["auto_reply"], true, "{received}");
    let (_, delivered) =
        send_to_ann(&server, &mail, json!({"conversation_id": received["conversation_id"], "text": "On its way."}))
            .await;
    assert!(String::from_utf8_lossy(&delivered).contains("On its way."));

    let newsletter = "List-Id: <news.shop.example>\nList-Post: <mailto:news@shop.example>\nPrecedence: list\n";
    mail.append(SUPPORT, &mail_text("news@shop.example", "Deals", "deals@shop.example", newsletter, "Buy!")).await;
    let (_, listed) = loop_until(|| async {
        let listed = server.get("/v1/channels/support/rejected").await;
        (listed.1["rejected"].as_array().is_some_and(|r| !r.is_empty())).then_some(listed)
    })
    .await;
    assert_eq!(listed["rejected"][0]["reason"], "an automatic reply outside any conversation", "{listed}");
    server.stop().await;
}

/// Outlook sending "Rich Text" through Exchange wraps every attachment into one winmail.dat
/// (application/ms-tnef) that no helpdesk can open (zammad#2403). The files come out of it as
/// attachments — names, types and bytes as Debian's `tnef` reads the same streams — for real
/// Outlook-written samples (tnefparse's test data, fetched by tests/run.sh), including long and
/// non-ASCII names and data held in MAPI properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_winmail_dat_is_unwrapped_into_its_files() {
    use sha2::Digest;
    let names = [
        "two-files",
        "umlaut",
        "MAPI_ATTACH_DATA_OBJ",
        "missing-filenames",
        "unicode-mapi-attr-name",
        "multi-value-attribute",
        "long-filename",
        "data-before-name",
    ];
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let sha256 = |bytes: &[u8]| sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut expected = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let (path, stream) = tnef_sample(name);
        // What Debian's tnef writes out of it (empty files aside: there is nothing in them).
        let out = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tnef")
            .args(["--overwrite", "-C"])
            .arg(out.path())
            .arg(&path)
            .status()
            .expect("Debian's tnef (tests/run.sh installs it)");
        assert!(status.success(), "tnef failed on {name}");
        let mut files: Vec<(String, String)> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
            .map(|p| {
                // tnef writes 8-bit names as Outlook stored them (Windows-1252).
                let raw = std::os::unix::ffi::OsStrExt::as_bytes(p.file_name().unwrap()).to_vec();
                let name =
                    String::from_utf8(raw.clone()).unwrap_or_else(|_| raw.iter().map(|b| char::from(*b)).collect());
                (name, sha256(&std::fs::read(&p).unwrap()))
            })
            .collect();
        files.sort();
        expected.push(files);
        let text = format!(
            "From: Ann <{}>\nTo: {}\nSubject: Unterlagen {n}\nMessage-ID: <tnef-{n}@example.org>\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"T\"\n\n--T\nContent-Type: text/plain; charset=utf-8\n\n\
             Anbei die Unterlagen.\n--T\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\n\
             Content-Disposition: attachment; filename=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n{}\n--T--\n",
            ANN.0,
            SUPPORT.0,
            base64_lines(&stream)
        );
        mail.append(SUPPORT, &text).await;
    }
    for n in 0..names.len() {
        nth_received(&helpdesk, n).await;
    }
    for message in helpdesk.events_of("message.received").iter().map(|e| &e["data"]) {
        let n: usize = message["subject"].as_str().unwrap().trim_start_matches("Unterlagen ").parse().unwrap();
        let mut got: Vec<(String, String)> = message["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["filename"].as_str().unwrap_or_default().to_owned(), a["sha256"].as_str().unwrap().to_owned()))
            .collect();
        got.sort();
        assert_eq!(got, expected[n], "{}: {message}", names[n]);
    }
    // The served bytes are the file's, and the type comes from Outlook where it named one.
    let umlaut =
        helpdesk.events_of("message.received").into_iter().find(|e| e["data"]["subject"] == "Unterlagen 1").unwrap();
    let jpeg = umlaut["data"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["filename"] == "image003.jpg")
        .unwrap()
        .clone();
    assert_eq!(jpeg["content_type"], "image/jpeg");
    let served =
        server.http.get(jpeg["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&served), jpeg["sha256"].as_str().unwrap());
    server.stop().await;
}

/// Authentication-Results headers as receiving servers write them (Gmail, Yahoo, Fastmail,
/// Zoho, iCloud, Rspamd, OpenDKIM, OpenDMARC, Postfix's policyd-spf; comments and quoted
/// strings holding `;`, versions, `none`) read by us and by Debian's Mail::AuthenticationResults:
/// the same authserv-id, and for DMARC, DKIM (any signature that passed) and SPF the same
/// result. Except where that parser cannot read a header at all (`KNOWN_DIFFERENCES`): those
/// must still differ, so the list stays only as long as it needs to be.
#[test]
fn authentication_results_read_as_mail_authenticationresults_reads_them() {
    const KNOWN_DIFFERENCES: &[(usize, &str)] =
        &[(1, "Microsoft 365 writes no authserv-id; that parser then reads nothing")];
    let values = [
        "mx.google.com;\r\n       dkim=pass header.i=@example.org header.s=20230601 header.b=Ab1/Cd2+;\r\n       spf=pass (google.com: domain of ann@example.org designates 2a00:1450::1 as permitted sender) smtp.mailfrom=ann@example.org;\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.org",
        "spf=pass (sender IP is 40.107.22.1)\r\n smtp.mailfrom=example.org; dkim=pass (signature was verified)\r\n header.d=example.org;dmarc=fail action=quarantine\r\n header.from=example.org;compauth=fail reason=000",
        "atlas-production.v2-mail-prod1-gq1.omega.yahoo.com;\r\n dkim=pass header.i=@example.org header.s=s1;\r\n spf=softfail smtp.mailfrom=example.org;\r\n dmarc=pass(p=REJECT) header.from=example.org;",
        "mx3.messagingengine.com;\r\n    dkim=pass (2048-bit rsa key sha256) header.d=example.org header.i=@example.org header.b=AbCd header.a=rsa-sha256 header.s=fm1 x-bits=2048;\r\n    dmarc=pass policy.published-domain-policy=none policy.applied-disposition=none policy.evaluated-disposition=none (p=none,d=none,d.eval=none) policy.policy-from=p header.from=example.org;\r\n    iprev=pass smtp.remote-ip=192.0.2.1 (mail.example.org);\r\n    spf=pass smtp.mailfrom=ann@example.org smtp.helo=mail.example.org",
        "mx.zohomail.com;\r\n\tdkim=pass;\r\n\tspf=pass (zohomail.com: domain of example.org designates 192.0.2.1 as permitted sender)  smtp.mailfrom=ann@example.org;\r\n\tdmarc=pass(p=none dis=none)  header.from=example.org",
        "bimi.icloud.com; bimi=skipped reason=\"insufficient dmarc\"",
        "mail.example.com;\r\n\tdkim=pass header.d=example.org header.s=s1 header.b=abc;\r\n\tdmarc=pass (policy=reject) header.from=example.org;\r\n\tspf=pass (mail.example.com: domain of ann@example.org designates 192.0.2.1 as permitted sender) smtp.mailfrom=ann@example.org",
        "mail.example.com;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=example.org header.i=@example.org header.b=\"AbCd1234\";\r\n\tdkim-atps=neutral",
        "mail.example.com; dmarc=fail (p=reject dis=none) header.from=example.com",
        "mail.example.com; spf=softfail (domain owner discourages use of this host) smtp.mailfrom=example.org (client-ip=192.0.2.1; helo=mail.example.org; envelope-from=ann@example.org; receiver=<UNKNOWN>)",
        "mx.example.com 1; spf=pass smtp.mailfrom=example.org",
        "mx.example.com; dkim=fail reason=\"signature; verification failed\" header.d=list.example; dkim=pass header.d=example.org; spf=none",
        "mx.example.com; none",
    ];
    let script = format!("{}/tests/perl/authentication_results.pl", env!("CARGO_MANIFEST_DIR"));
    let out = piped("perl", &[script.as_str()], json!(values).to_string().as_bytes());
    assert!(
        out.status.success(),
        "Mail::AuthenticationResults: {} (apt-get install libmail-authenticationresults-perl; tests/run.sh does)",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs.len(), values.len());
    // Their result keeps a comment written against it (`pass(p=REJECT)`); a comment is no part
    // of the result (RFC 8601 §2.2).
    let result = |entries: &Value, method: &str| -> Option<String> {
        let results: Vec<String> = entries[method]
            .as_array()?
            .iter()
            .map(|r| r.as_str().unwrap().split('(').next().unwrap().trim().to_owned())
            .collect();
        match method {
            "dkim" if results.iter().any(|r| r == "pass") => Some("pass".into()),
            _ => results.into_iter().next(),
        }
    };
    let (mut differences, mut agreed) = (Vec::new(), 0);
    for (n, (value, theirs)) in values.iter().zip(&theirs).enumerate() {
        let ours =
            switchboard::channels::email::authentication::parse(value).map(|r| (r.authserv_id, r.dmarc, r.dkim, r.spf));
        let expected = (!theirs.is_null()).then(|| {
            let id = theirs["authserv_id"].as_str().map(str::to_owned);
            (id, result(theirs, "dmarc"), result(theirs, "dkim"), result(theirs, "spf"))
        });
        let known = KNOWN_DIFFERENCES.iter().any(|(known, _)| *known == n);
        match (ours == expected, known) {
            (true, false) => agreed += 1,
            (false, true) => assert!(ours.is_some(), "{n}: we read nothing either"),
            (true, true) => differences.push(format!("{n}: now read as they read it; off the list")),
            (false, false) => differences.push(format!("{n}: ours {ours:?}, theirs {expected:?}")),
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert_eq!(agreed + KNOWN_DIFFERENCES.len(), values.len());
}

/// With `authserv_id`, the receiving server's Authentication-Results header is read: the
/// customer's message carries its results, and a mail in our own name that the server found
/// forged (an attacker answering the customer's thread "as us": it would pass the sender guard,
/// since our own mail may join any conversation) is refused, listed with why. Only the topmost
/// header with that authserv-id counts: one with another id above it, or a forged "pass" below
/// it, changes nothing. The agent's genuine copy (Bcc from the mail client) is ours as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_forged_in_our_name_is_refused_where_the_receiving_server_says_so() {
    let mail = MailServers::start().await;
    let passed = "Authentication-Results: mx.example.com;\r\n dkim=pass header.d=example.org;\r\n spf=pass smtp.mailfrom=ann@example.org;\r\n dmarc=pass (p=reject) header.from=example.org\r\n";
    let customer = format!(
        "{passed}From: Ann <{}>\r\nTo: {}\r\nSubject: Order 7\r\nMessage-ID: <ann-1@example.org>\r\n\r\nWhere is order 7?\r\n",
        ANN.0, SUPPORT.0
    );
    let forged = format!(
        "Authentication-Results: attacker.example; dmarc=pass\r\n\
         Authentication-Results: mx.example.com; spf=fail smtp.mailfrom=example.com;\r\n dmarc=fail (p=none) header.from=example.com\r\n\
         Authentication-Results: mx.example.com; dmarc=pass\r\n\
         From: Example Support <{}>\r\nTo: {}\r\nSubject: Re: Order 7\r\nMessage-ID: <forged-1@attacker.example>\r\n\
         In-Reply-To: <ann-1@example.org>\r\n\r\nPlease pay the customs fee to IBAN XX00 0000.\r\n",
        SUPPORT.0, ANN.0
    );
    let genuine = format!(
        "Authentication-Results: mx.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com\r\n\
         From: Example Support <{}>\r\nTo: {}\r\nSubject: Re: Order 7\r\nMessage-ID: <agent-1@example.com>\r\n\
         In-Reply-To: <ann-1@example.org>\r\n\r\nIt ships tomorrow.\r\n",
        SUPPORT.0, ANN.0
    );
    for text in [&customer, &forged, &genuine] {
        mail.append(SUPPORT, text).await;
    }
    let (helpdesk, server) = with_helpdesk_and(&mail, "authserv_id = \"mx.example.com\"").await;
    let message = nth_received(&helpdesk, 0).await;
    assert_eq!(
        message["authentication"],
        json!({"authserv_id": "mx.example.com", "dmarc": "pass", "dkim": "pass", "spf": "pass"}),
        "{message}"
    );
    let sent = helpdesk
        .wait_until(Duration::from_secs(15), "the agent's answer", |r| {
            r.iter().any(|c| c.answered == 200 && c.event_type() == "message.sent")
        })
        .await;
    let sent: Vec<Value> =
        sent.iter().filter(|c| c.event_type() == "message.sent").map(|c| c.json()["data"].clone()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (&sent[0]["text"], &sent[0]["conversation_id"]),
        (&json!("It ships tomorrow.\r\n"), &message["conversation_id"])
    );
    let rejected = refused_items(&server, "support", 1).await;
    assert_eq!(
        rejected[0]["reason"],
        "from our own address support@example.com, which mx.example.com found forged (dmarc=fail, spf=fail)"
    );
    let (_, conversation) =
        server.get(&format!("/v1/conversations/{}/messages", message["conversation_id"].as_str().unwrap())).await;
    let texts: Vec<&Value> = conversation["messages"].as_array().unwrap().iter().map(|m| &m["text"]).collect();
    assert_eq!(texts.len(), 2, "the forgery is in no conversation: {conversation}");
    server.validate_contract(vec![json!({"schema": "Message", "instance": message})]).await;
    server.stop().await;
}

/// With `request_delivery_receipts`, the recipient asks Postfix (on a server that offers DSN)
/// for a notification on success too. Postfix hands the mail to Dovecot's LMTP, which offers no
/// DSN, and reports it `relayed` ("successfully delivered to the destination"): that makes our
/// message `delivered` (`message.delivered`), as mail providers count a mail the recipient's
/// server accepted; the report stays in the conversation as an automatic message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_receipt_from_postfix_makes_our_message_delivered() {
    let mail = MailServers::start().await;
    let postfix = mail.start_postfix().await;
    let server =
        TestServer::start(&mail.channel_via_mta_with("support", postfix.port, "request_delivery_receipts = true"))
            .await;
    let (status, queued) = server
        .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Your order 7", "text": "Shipped."}))
        .await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().unwrap();
    let delivered = server.wait_status(id, "delivered").await;
    assert!(delivered["delivered_at"].is_string(), "{delivered}");
    let log = postfix.log();
    assert!(log.contains("sender delivery status notification"), "Postfix's own success DSN: {log}");
    let report = first_received(&server).await;
    let data = &report["data"];
    assert_eq!(
        (&data["delivery_report"]["action"], &data["stitch"]["reason"]),
        (&json!("relayed"), &json!("receipt")),
        "{data}"
    );
    assert_eq!(data["conversation_id"], queued["conversation_id"]);
    assert_eq!(data["delivery_report"]["original_envelope_id"], id);
    let events: Vec<String> =
        server.all_events().await.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert!(events.contains(&"message.delivered".to_owned()), "{events:?}");
    server.stop().await;
}

/// The Message-ID header field of a delivered mail, angle brackets and all.
fn message_id_header(mail: &str) -> String {
    let field = mail.lines().find_map(|l| l.strip_prefix("Message-ID: ").or_else(|| l.strip_prefix("Message-Id: ")));
    field.unwrap_or_else(|| panic!("no Message-ID in {mail}")).trim().to_owned()
}

/// With `request_read_receipts`, our mail asks for a read receipt (RFC 8098). Sent through the
/// real SMTP server into Ann's mailbox, it carries `Disposition-Notification-To`; the receipt
/// her mail client sends back (Thunderbird's form) makes our message `read` with
/// `message.read`, and is kept in the conversation as an automatic message (`stitch.reason`
/// `receipt`). A receipt about a mail we never sent is refused and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_receipt_makes_our_message_read() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk_and(&mail, "request_read_receipts = true").await;
    let (queued, delivered) = send_to_ann(
        &server,
        &mail,
        json!({"channel": "support", "to": ANN.0, "subject": "Your order 7", "text": "It ships today."}),
    )
    .await;
    let delivered = String::from_utf8(delivered).unwrap();
    assert!(delivered.contains(&format!("Disposition-Notification-To: <{}>", SUPPORT.0)), "{delivered}");
    let header_id = message_id_header(&delivered);
    let receipt = |about: &str, n: u32| {
        format!(
            "Return-Path: <>\r\nFrom: Ann <{ann}>\r\nTo: {support}\r\nSubject: Return Receipt (displayed) - Your order 7\r\n\
             Message-ID: <receipt-{n}@example.org>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=disposition-notification; boundary=\"R\"\r\n\r\n\
             --R\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nThis is a Return Receipt for the mail that you sent to {ann}.\r\n\
             --R\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: example.org; Mozilla Thunderbird\r\n\
             Final-Recipient: rfc822;{ann}\r\nOriginal-Message-ID: {about}\r\n\
             Disposition: manual-action/MDN-sent-manually; displayed\r\n--R--\r\n",
            ann = ANN.0,
            support = SUPPORT.0
        )
    };
    mail.append(SUPPORT, &receipt(&header_id, 1)).await;
    mail.append(SUPPORT, &receipt("<never-sent@example.com>", 2)).await;
    let id = queued["id"].as_str().unwrap();
    let read = server.wait_status(id, "read").await;
    assert!(read["read_at"].is_string(), "{read}");
    let events = helpdesk
        .wait_until(Duration::from_secs(15), "message.read", |r| {
            r.iter().any(|c| c.answered == 200 && c.event_type() == "message.read")
        })
        .await;
    let read_event = events.iter().find(|c| c.event_type() == "message.read").unwrap().json();
    assert_eq!(read_event["data"]["id"], id);
    let stored = nth_received(&helpdesk, 0).await;
    assert_eq!(
        (
            &stored["auto_reply"],
            &stored["stitch"]["reason"],
            &stored["conversation_id"],
            &stored["delivery_report"]["action"]
        ),
        (&json!(true), &json!("receipt"), &queued["conversation_id"], &json!("displayed")),
        "{stored}"
    );
    let rejected = refused_items(&server, "support", 1).await;
    assert_eq!(rejected[0]["reason"], "a read receipt about a message this gateway did not send");
    server
        .validate_contract(vec![
            json!({"schema": "Message", "instance": stored}),
            json!({"schema": "Event", "instance": read_event}),
        ])
        .await;
    server.stop().await;
}

/// The read receipt of a real mail client: Roundcube (Debian's roundcube-core, set to send
/// receipts without asking) logs into Ann's mailbox and opens our mail, which asks for one.
/// Roundcube sends its RFC 8098 receipt through the SMTP server as Ann and flags the mail
/// `$MDNSent`; the receipt comes into the support mailbox and makes our message `read`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_receipt_roundcube_sends_makes_our_message_read() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "request_read_receipts = true")).await;
    let (queued, delivered) = send_to_ann(
        &server,
        &mail,
        json!({"channel": "support", "to": ANN.0, "subject": "Your order 7", "text": "It ships today."}),
    )
    .await;
    let delivered = String::from_utf8(delivered).unwrap();
    let message_id = message_id_header(&delivered);

    let workdir = tempfile::tempdir().unwrap();
    let ports = [mail.imap_port.to_string(), mail.smtp_port.to_string()];
    let workdir_path = workdir.path().to_str().unwrap().to_owned();
    let said = tokio::task::spawn_blocking(move || {
        python("roundcube_peer.py", &[&workdir_path, &ports[0], &ports[1], ANN.0, ANN.1, &message_id], &Value::Null)
    })
    .await
    .unwrap();
    let opened: Value = said.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| panic!("{said}"));
    assert!(opened["flags"].as_array().unwrap().contains(&json!("$MDNSent")), "{said}");

    let id = queued["id"].as_str().unwrap();
    let read = server.wait_status(id, "read").await;
    assert!(read["read_at"].is_string(), "{read}");
    let receipt = first_received(&server).await;
    let data = &receipt["data"];
    assert_eq!(
        (&data["from"]["address"], &data["auto_reply"], &data["stitch"]["reason"], &data["conversation_id"]),
        (&json!(ANN.0), &json!(true), &json!("receipt"), &queued["conversation_id"]),
        "{receipt}"
    );
    assert_eq!(data["delivery_report"]["action"], json!("displayed"), "{receipt}");
    server.stop().await;
}

/// Debian's SpamAssassin, as a receiving server runs it, marks GTUBE (the standard test spam)
/// — once wrapping the mail in a report (its default), once only adding its headers — and
/// passes a customer's mail. Both spams are refused and listed with the header that said so,
/// so no conversation is opened for them (nor a helpdesk's acknowledgement sent to a spammer);
/// the customer's mail comes in, and an operator can still take a refused one in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_the_receiving_servers_spam_filter_marked_is_refused() {
    let spamassassin = |mail: &str, config: &[&str]| -> String {
        let out = piped("spamassassin", &[&["-L", "-x"][..], config].concat(), mail.as_bytes());
        assert!(out.status.success(), "spamassassin: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let gtube = |n: u32| {
        format!(
            "From: Lottery <win@lottery.example>\r\nTo: {}\r\nSubject: You won {n}\r\nMessage-ID: <gtube-{n}@lottery.example>\r\n\
             Date: Mon, 30 Nov 2026 10:00:0{n} +0000\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n",
            SUPPORT.0
        )
    };
    let wrapped = spamassassin(&gtube(1), &[]);
    let tagged = spamassassin(&gtube(2), &["--cf", "report_safe 0"]);
    let customer = spamassassin(
        &format!(
            "From: Ann <{}>\r\nTo: {}\r\nSubject: Refund\r\nMessage-ID: <ann-ham@example.org>\r\n\
             Date: Mon, 30 Nov 2026 10:01:00 +0000\r\n\r\nPlease refund order 7.\r\n",
            ANN.0, SUPPORT.0
        ),
        &[],
    );
    assert!(wrapped.contains("X-Spam-Flag: YES") && tagged.contains("X-Spam-Flag: YES"), "{wrapped}\n{tagged}");
    assert!(customer.contains("X-Spam-Status: No"), "{customer}");
    let mail = MailServers::start().await;
    for text in [&wrapped, &tagged, &customer] {
        mail.append(SUPPORT, text).await;
    }
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let message = nth_received(&helpdesk, 0).await;
    assert_eq!(message["subject"], "Refund");
    let rejected = refused_items(&server, "support", 2).await;
    for item in &rejected {
        let reason = item["reason"].as_str().unwrap();
        assert!(reason.starts_with("marked as spam by the receiving server (X-Spam-Flag: YES)"), "{item}");
    }
    let id = rejected[1]["id"].as_u64().unwrap();
    let (status, taken) = server.post(&format!("/v1/channels/support/rejected/{id}/accept"), json!({})).await;
    assert_eq!(status, 200, "an operator's word overrides the filter's: {taken}");
    let spam = nth_received(&helpdesk, 1).await;
    assert_eq!(spam["subject"], "You won 2");
    assert_eq!(helpdesk.events_of("message.received").len(), 2, "nothing else came in");
    server.stop().await;
}

/// An S/MIME opaque-signed mail (Outlook with "clear text signed" off) is one
/// `application/pkcs7-mime` part with the signed mail inside; helpdesks that do not look inside
/// show it empty (zammad#6376). Signed by Debian's `openssl` in both its encodings (`cms
/// -stream`: BER with indefinite lengths and the content in chunks; `smime`: DER), it reaches
/// the helpdesk as the same mail unsigned does: its text, HTML and files, under its own sender,
/// subject and Message-ID; its kept source still holds the signature. So does a clear-signed
/// one, whose detached `smime.p7s` is no file of the sender's. An encrypted one, which cannot
/// be read without the recipient's key, keeps its `smime.p7m`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_signed_mail_reads_as_the_mail_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let ssl = |args: &[&str]| openssl(dir.path(), args);
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ann.key",
        "-out",
        "ann.pem",
        "-days",
        "2",
        "-subj",
        &format!("/CN=Ann/emailAddress={}", ANN.0),
    ]);
    let pdf = b"%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n";
    let entity = format!(
        "Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n\
         --A\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Hello,\r\n\r\nthe invoice for order 7 is attached. When will it reach München?\r\n\r\nAnn\r\n\
         --A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello,</p><p>the invoice for order 7 is attached. \
         When will it reach München?</p><p>Ann</p>\r\n--A--\r\n\
         --M\r\nContent-Type: application/pdf; name=\"invoice-7.pdf\"\r\nContent-Disposition: attachment; \
         filename=\"invoice-7.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--M--\r\n",
        base64_lines(pdf).replace('\n', "\r\n")
    );
    std::fs::write(dir.path().join("entity.eml"), &entity).unwrap();
    let signer = ["-signer", "ann.pem", "-inkey", "ann.key", "-in", "entity.eml", "-binary", "-nodetach"];
    let streamed = ssl(&[&["cms", "-sign", "-stream", "-outform", "SMIME"][..], &signer].concat());
    let der = ssl(&[&["smime", "-sign"][..], &signer].concat());
    // Clear-signed (multipart/signed with a detached smime.p7s), as most clients sign.
    let clear = ssl(&["cms", "-sign", "-signer", "ann.pem", "-inkey", "ann.key", "-in", "entity.eml", "-binary"]);
    let encrypted = ssl(&["cms", "-encrypt", "-aes256", "-in", "entity.eml", "-outform", "SMIME", "ann.pem"]);
    let streamed = String::from_utf8(streamed).unwrap();
    assert!(streamed.contains("smime-type=signed-data"), "{streamed}");

    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let mails = [
        ("unsigned", entity.as_str()),
        ("streamed", &streamed),
        ("der", std::str::from_utf8(&der).unwrap()),
        ("clear", std::str::from_utf8(&clear).unwrap()),
    ];
    let encrypted = String::from_utf8(encrypted).unwrap();
    for (n, (name, body)) in mails.iter().chain([("encrypted", encrypted.as_str())].iter()).enumerate() {
        let header = format!(
            "From: Ann <{}>\r\nTo: {}\r\nSubject: Invoice {name}\r\nMessage-ID: <smime-{name}@example.org>\r\n\
             Date: Mon, 30 Nov 2026 09:12:4{n} +0100\r\n",
            ANN.0, SUPPORT.0
        );
        // openssl's own output starts with MIME-Version; the unsigned entity gets one.
        let mime = if body.starts_with("MIME-Version") { "" } else { "MIME-Version: 1.0\r\n" };
        mail.append(SUPPORT, &format!("{header}{mime}{body}")).await;
    }
    for n in 0..5 {
        nth_received(&helpdesk, n).await;
    }
    let received = helpdesk.events_of("message.received");
    let message = |name: &str| {
        received.iter().map(|e| e["data"].clone()).find(|m| m["subject"] == format!("Invoice {name}")).unwrap()
    };
    let reading = |m: &Value| {
        let files: Vec<_> = m["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["filename"].clone(), a["content_type"].clone(), a["sha256"].clone()))
            .collect();
        (m["text"].clone(), m["html"].clone(), m["reply_text"].clone(), m["from"].clone(), files)
    };
    let unsigned = message("unsigned");
    assert!(unsigned["text"].as_str().unwrap().contains("When will it reach München?"), "{unsigned}");
    assert_eq!(unsigned["attachments"][0]["filename"], "invoice-7.pdf", "{unsigned}");
    for name in ["streamed", "der", "clear"] {
        let signed = message(name);
        assert_eq!(reading(&signed), reading(&unsigned), "{name}: {signed}");
        assert_eq!(signed["provider"]["message_id"], format!("smime-{name}@example.org"));
        let source = server
            .http
            .get(signed["source"]["url"].as_str().unwrap())
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            source.contains("application/pkcs7-") || source.contains("application/x-pkcs7-"),
            "{name}: the signature is kept"
        );
    }
    let encrypted = message("encrypted");
    assert_eq!(encrypted["text"], Value::Null, "{encrypted}");
    let files = &encrypted["attachments"];
    assert_eq!(
        (&files[0]["filename"], &files[0]["content_type"]),
        (&json!("smime.p7m"), &json!("application/pkcs7-mime"))
    );
    // The helpdesk is told why there is no text.
    assert_eq!(
        (&encrypted["encryption"]["kind"], &encrypted["encryption"]["decrypted"]),
        (&json!("smime"), &json!(false))
    );
    assert_eq!(message("unsigned").get("encryption"), None);
    server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Appends to support's mailbox the `n`th signed mail of a test, from `from@customer.example`,
/// with `subject` and `body` (the signed structure: its MIME header and content); the mail as
/// appended, for a reference verifier.
async fn append_signed(mail: &MailServers, n: usize, from: &str, subject: &str, body: &str) -> String {
    let text = format!(
        "From: {from} <{from}@customer.example>\r\nTo: {}\r\nSubject: {subject}\r\n\
         Message-ID: <signed-{n}@customer.example>\r\nDate: Tue, 01 Dec 2026 10:{n:02}:00 +0100\r\n{body}",
        SUPPORT.0
    );
    mail.append(SUPPORT, &text).await;
    text
}

/// The `message.received` events of `mails` (subject, body), appended in order from Ann's
/// customer address (`append_signed`) on a channel with `config`; and the server, to stop.
async fn received_from_ann<'a>(
    mail: &MailServers,
    config: &str,
    mails: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Vec<Value>, TestServer) {
    let (helpdesk, server) = with_helpdesk_and(mail, config).await;
    let mut count = 0;
    for (n, (subject, body)) in mails.enumerate() {
        append_signed(mail, n, "ann", subject, body).await;
        count += 1;
    }
    for n in 0..count {
        nth_received(&helpdesk, n).await;
    }
    (helpdesk.events_of("message.received"), server)
}

/// A signed mail's signature is checked, and the message says what was found (`signature`), as
/// a mail client's badge does. A small PKI made with Debian's `openssl` (a customer company's
/// CA, which the channel trusts through `smime_ca_file`; RSA and EC people's certificates; a
/// web server's; a self-signed one) signs mails clear (`multipart/signed`) and opaque, and
/// Debian's `openssl cms -verify` is the reference for each verdict on the exact mail that
/// went through Dovecot: `invalid` where it finds the content changed, `valid` only where it
/// accepts the chain for S/MIME signing (and the certificate is the sender's, which openssl
/// does not check), `untrusted` where it accepts the content but not the chain. The one
/// deliberate difference: a SHA-1 signature, which openssl still accepts, is `unverifiable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mails_signature_is_checked_as_openssl_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let ssl = |args: &[&str]| openssl(dir.path(), args);
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    let pki = SmimePki::new(dir.path(), "/O=Customer Example/CN=Customer Example Mail CA");
    // People's certificates from the CA: (name, key, extended key usage, address).
    let people = [
        ("ann", RSA_KEY, "emailProtection", "ann@customer.example"),
        ("bob", EC_KEY, "emailProtection", "bob@customer.example"),
        ("dave", RSA_KEY, "serverAuth", "dave@customer.example"),
    ];
    for (name, key, usage, address) in people {
        pki.issue(name, key, "ca", &SmimePki::person(address, usage));
    }
    ssl(&[
        &["req", "-x509", "-nodes", "-keyout", "eve.key", "-out", "eve.pem", "-days", "30"][..],
        RSA_KEY,
        &["-subj", "/CN=Eve/emailAddress=eve@customer.example"],
    ]
    .concat());
    let entity = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
                  Hello,\r\n\r\nplease send the invoice for order 7 to München.\r\n\r\nThanks\r\n";
    write("entity.eml", entity);
    let sign = |signer: &str, extra: &[&str]| {
        let (pem, key) = (format!("{signer}.pem"), format!("{signer}.key"));
        let args = [&["cms", "-sign", "-signer", &pem, "-inkey", &key, "-in", "entity.eml", "-binary"][..], extra];
        String::from_utf8(ssl(&args.concat())).unwrap()
    };
    let clear = sign("ann", &[]);
    let altered = clear.replacen("order 7", "order 8", 1);
    assert_ne!(clear, altered);
    // (subject, From, body, expected status, expected signer)
    let mails = [
        ("ann clear", "ann", clear.clone(), "valid", Some("ann@customer.example")),
        (
            "ann opaque",
            "ann",
            sign("ann", &["-nodetach", "-stream", "-outform", "SMIME"]),
            "valid",
            Some("ann@customer.example"),
        ),
        (
            "ann pss",
            "ann",
            sign("ann", &["-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"]),
            "valid",
            Some("ann@customer.example"),
        ),
        (
            "ann pss max salt",
            "ann",
            sign("ann", &["-keyopt", "rsa_padding_mode:pss"]),
            "unverifiable",
            Some("ann@customer.example"),
        ),
        ("bob ec", "bob", sign("bob", &[]), "valid", Some("bob@customer.example")),
        ("ann altered", "ann", altered, "invalid", Some("ann@customer.example")),
        ("ann as carol", "carol", clear.clone(), "untrusted", Some("ann@customer.example")),
        ("dave web", "dave", sign("dave", &[]), "untrusted", Some("dave@customer.example")),
        ("eve self-signed", "eve", sign("eve", &[]), "untrusted", Some("eve@customer.example")),
        ("ann sha1", "ann", sign("ann", &["-md", "sha1"]), "unverifiable", Some("ann@customer.example")),
        // No signed attributes: the signature covers the content itself (and says no time).
        ("ann no attributes", "ann", sign("ann", &["-noattr"]), "valid", Some("ann@customer.example")),
    ];
    let mail = MailServers::start().await;
    let ca_file = dir.path().join("ca.pem");
    let (helpdesk, server) =
        with_helpdesk_and(&mail, &format!("smime_ca_file = {:?}", ca_file.to_str().unwrap())).await;
    let mut sent = Vec::new();
    for (n, (subject, from, body, _, _)) in mails.iter().enumerate() {
        sent.push(append_signed(&mail, n, from, subject, body).await);
    }
    mail.append(
        SUPPORT,
        &format!("From: ann@customer.example\r\nTo: {}\r\nSubject: unsigned\r\n\r\nHi\r\n", SUPPORT.0),
    )
    .await;
    for n in 0..=mails.len() {
        nth_received(&helpdesk, n).await;
    }
    let received = helpdesk.events_of("message.received");
    let message = |subject: &str| received.iter().map(|e| e["data"].clone()).find(|m| m["subject"] == subject).unwrap();
    assert_eq!(message("unsigned").get("signature"), None, "an unsigned mail has none");
    for ((subject, _, _, status, signer), text) in mails.iter().zip(&sent) {
        let found = message(subject);
        let signature = &found["signature"];
        assert_eq!((&signature["kind"], &signature["status"]), (&json!("smime"), &json!(status)), "{subject}: {found}");
        assert_eq!(signature["signer"].as_str(), *signer, "{subject}: {signature}");
        // The reference, on the mail as it went in.
        write("mail.eml", text);
        let as_signed =
            openssl_succeeds(dir.path(), &["cms", "-verify", "-noverify", "-in", "mail.eml", "-out", "/dev/null"]);
        let trusted = openssl_succeeds(
            dir.path(),
            &["cms", "-verify", "-CAfile", "ca.pem", "-purpose", "smimesign", "-in", "mail.eml", "-out", "/dev/null"],
        );
        let reference = match (as_signed, trusted) {
            (false, _) => "invalid",
            (true, false) => "untrusted",
            (true, true) if *subject == "ann as carol" => "untrusted", // openssl does not compare From
            // The deliberate difference, and a salt ring does not take.
            (true, true) if *subject == "ann sha1" || *subject == "ann pss max salt" => "unverifiable",
            (true, true) => "valid",
        };
        assert_eq!(*status, reference, "{subject}: openssl says {reference}, we say {signature}");
    }
    let detail = |subject: &str| message(subject)["signature"]["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail("ann altered"), "the mail was changed after it was signed");
    assert_eq!(
        detail("ann as carol"),
        "the certificate is for ann@customer.example, not the sender carol@customer.example"
    );
    assert_eq!(detail("dave web"), "the certificate is not for signing mail");
    assert_eq!(detail("eve self-signed"), "the certificate is self-signed, not from a trusted CA");
    assert_eq!(detail("ann sha1"), "signed with SHA-1, which is no longer safe");
    assert!(detail("ann clear").starts_with("signed by ann@customer.example"), "{}", detail("ann clear"));
    // The altered one is still the customer's mail, read as it arrived: nothing is refused.
    assert!(message("ann altered")["text"].as_str().unwrap().contains("order 8"));
    server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;

    // Without the company's CA the same signature is sound but not trusted.
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    mail.append(SUPPORT, &sent[0]).await;
    let signature = nth_received(&helpdesk, 0).await["signature"].clone();
    assert_eq!(
        signature,
        json!({"kind": "smime", "status": "untrusted", "signer": "ann@customer.example",
               "detail": "the certificate is not from a trusted CA"})
    );
    server.stop().await;
}

/// An OpenPGP-signed mail's signature is checked against the channel's keyring
/// (`openpgp_keyring_file`), and the message says what was found, as for S/MIME. Debian's GnuPG
/// makes the customers' keys (Ed25519; RSA with a signing subkey; one revoked after it signed;
/// one that had expired when it signed; one the operator never imported) and signs as
/// Thunderbird (PGP/MIME) and mutt (inline) do. `gpg --verify`, with a home that holds only the
/// keyring, is the reference on each signature as it went through Dovecot: `invalid` where it
/// says BADSIG, `unverifiable` where it has no key, `valid` or `untrusted` where the signature
/// is good. Mallory's mail client sends his key along (Autocrypt): a second reference took it
/// in, as an Autocrypt client does, and we check with it without trusting it. The deliberate
/// differences are asserted by name: gpg does not compare the From address, nor look at text
/// around an inline signature, nor tell a key the mail brought from one it was given; it still
/// takes SHA-1; and it calls a signature from a key that has expired since it signed an expired
/// key's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openpgp_signed_mails_signature_is_checked_as_gnupg_checks_it() {
    let gpg = Gnupg::new();
    let ann = gpg.key("Ann Example <ann@customer.example>", "ed25519");
    gpg.run(&["--quick-generate-key", "Bob <bob@customer.example>", "rsa2048", "cert", "never"]);
    gpg.run(&["--quick-add-key", &gpg.fingerprint("bob@customer.example"), "rsa2048", "sign", "never"]);
    let carl = gpg.key("carl@customer.example", "ed25519");
    gpg.key("Mallory <mallory@customer.example>", "ed25519");
    // Mallory's key as his mail client sends it along (Autocrypt), folded.
    let mallory_key = gpg.run(&["--export", "mallory@customer.example"]);
    let keydata = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &mallory_key);
    let keydata: String =
        keydata.as_bytes().chunks(72).map(|c| format!("\r\n {}", String::from_utf8_lossy(c))).collect();
    let autocrypt = format!("Autocrypt: addr=mallory@customer.example; prefer-encrypt=mutual; keydata={keydata}\r\n");
    // GnuPG's clock set to a day and time of November 2026 (`10T120000`).
    let at = |when: &str| format!("--faked-system-time=202611{when}");
    gpg.run(&[&at("10T000000"), "--quick-generate-key", "Dave <dave@customer.example>", "ed25519", "sign", "never"]);
    gpg.run(&[&at("10T000000"), "--quick-generate-key", "Erin <erin@customer.example>", "ed25519", "sign", "1d"]);

    let entity = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
                  Hello,\r\n\r\nplease send the invoice for order 7 to München.\r\n\r\nThanks\r\n";
    gpg.file("entity.txt", entity.as_bytes());
    let text = "Hello,\n\nplease send the invoice for order 7 to München.\n\n- Thanks\n";
    gpg.file("text.txt", text.as_bytes());
    // PGP/MIME as Thunderbird sends it: the entity, then its detached signature.
    let pgp_mime = |signature: &[u8], entity: &str| {
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=pgp-sha256;\r\n \
             protocol=\"application/pgp-signature\"; boundary=\"sig-b\"\r\n\r\n\
             This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n--sig-b\r\n{entity}\r\n--sig-b\r\n\
             Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n\
             Content-Disposition: attachment; filename=\"OpenPGP_signature.asc\"\r\n\r\n{}\r\n--sig-b--\r\n",
            String::from_utf8_lossy(signature)
        )
    };
    let detached = |signer: &str, extra: &[&str]| {
        let args = [extra, &["-u", signer, "--detach-sign", "--armor", "-o", "-", "entity.txt"][..]].concat();
        pgp_mime(&gpg.run(&args), entity)
    };
    // Inline as mutt sends it: the cleartext signature as the text.
    let inline = |signer: &str, extra: &[&str]| {
        let args = [extra, &["-u", signer, "--clearsign", "-o", "-", "text.txt"][..]].concat();
        let signed = String::from_utf8(gpg.run(&args)).unwrap().replace('\n', "\r\n");
        format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{signed}")
    };
    let ann_mime = detached(&ann, &[]);
    let ann_inline = inline(&ann, &[]);
    let carl_before_revocation = detached(&carl, &[]);
    let dave_signed = inline("dave@customer.example", &[&at("12T000000")]);
    let erin_signed = inline("erin@customer.example", &[&at("10T120000")]);
    // Carl revokes his key after signing (his revocation certificate, as GnuPG stored it);
    // Dave's key expires on the 11th, by a self-signature made later than the key's first.
    let revocation = std::fs::read_to_string(gpg.home.path().join(format!("openpgp-revocs.d/{carl}.rev"))).unwrap();
    gpg.file("carl.rev", revocation.replace(":-----BEGIN", "-----BEGIN").as_bytes());
    gpg.run(&["--import", "carl.rev"]);
    gpg.run(&[&at("10T120000"), "--quick-set-expire", &gpg.fingerprint("dave@customer.example"), "1d"]);
    // The operator's keyring: everyone but Mallory.
    let people = ["ann", "bob", "carl", "dave", "erin"].map(|p| format!("{p}@customer.example"));
    let keyring =
        gpg.run(&[&["--export", "--armor"][..], &people.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    let keyring_file = gpg.file("keyring.asc", &keyring);

    // (subject, From, body, expected status)
    let mails = [
        ("ann mime", "ann", ann_mime.clone(), "valid"),
        ("ann inline", "ann", ann_inline.clone(), "valid"),
        ("bob subkey", "bob", detached("bob@customer.example", &[]), "valid"),
        ("ann mime altered", "ann", ann_mime.replacen("order 7", "order 8", 1), "invalid"),
        ("ann inline altered", "ann", ann_inline.replacen("order 7", "order 8", 1), "invalid"),
        ("ann as bob", "bob", ann_mime.clone(), "untrusted"),
        ("ann inline with footer", "ann", format!("{ann_inline}\r\n-- \r\nThe customer list\r\n"), "untrusted"),
        ("carl revoked", "carl", carl_before_revocation, "untrusted"),
        ("dave expired before signing", "dave", dave_signed, "untrusted"),
        ("erin expired since", "erin", erin_signed, "valid"),
        ("mallory unknown", "mallory", detached("mallory@customer.example", &[]), "unverifiable"),
        (
            "mallory autocrypt",
            "mallory",
            format!("{autocrypt}{}", detached("mallory@customer.example", &[])),
            "untrusted",
        ),
        (
            "mallory autocrypt altered",
            "mallory",
            format!("{autocrypt}{}", detached("mallory@customer.example", &[]).replacen("order 7", "order 8", 1)),
            "invalid",
        ),
        ("bob sha1", "bob", detached("bob@customer.example", &["--digest-algo", "SHA1"]), "unverifiable"),
    ];
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk_and(&mail, &format!("openpgp_keyring_file = {keyring_file:?}")).await;
    let mut sent = Vec::new();
    for (n, (subject, from, body, _)) in mails.iter().enumerate() {
        sent.push(append_signed(&mail, n, from, subject, body).await);
    }
    for n in 0..mails.len() {
        nth_received(&helpdesk, n).await;
    }
    let received = helpdesk.events_of("message.received");
    let message = |subject: &str| received.iter().map(|e| e["data"].clone()).find(|m| m["subject"] == subject).unwrap();

    // The reference: a GnuPG that knows only the keyring; for a mail with an Autocrypt header,
    // one that also took the key it carries, as an Autocrypt mail client does.
    let keyring_only = Gnupg::new();
    keyring_only.run(&["--import", &keyring_file]);
    let with_carried = Gnupg::new();
    with_carried.run(&["--import", &keyring_file]);
    with_carried.run(&["--import", &gpg.file("mallory.gpg", &mallory_key)]);
    for ((subject, _, _, status), text) in mails.iter().zip(&sent) {
        let reference = if text.contains("Autocrypt:") { &with_carried } else { &keyring_only };
        let found = message(subject);
        let signature = &found["signature"];
        assert_eq!(
            (&signature["kind"], &signature["status"]),
            (&json!("openpgp"), &json!(status)),
            "{subject}: {found}"
        );
        // The signature and what it signs, cut from the mail as it went in.
        let verify = if text.contains("multipart/signed") {
            let parts: Vec<&str> = text.split("\r\n--sig-b\r\n").collect();
            let armored = &parts[2][parts[2].find("-----BEGIN").unwrap()..];
            reference.file("signed.txt", parts[1].as_bytes());
            reference.file("signature.asc", armored.as_bytes());
            reference.output(&["--status-fd", "1", "--verify", "signature.asc", "signed.txt"])
        } else {
            let start = text.find("-----BEGIN PGP SIGNED MESSAGE-----").unwrap();
            reference.file("inline.asc", &text.as_bytes()[start..]);
            reference.output(&["--status-fd", "1", "--verify", "inline.asc"])
        };
        let said = String::from_utf8_lossy(&verify.stdout).into_owned();
        let gnupg = ["GOODSIG", "BADSIG", "REVKEYSIG", "EXPKEYSIG", "NO_PUBKEY"]
            .into_iter()
            .find(|token| said.contains(&format!("[GNUPG:] {token} ")))
            .unwrap_or_else(|| panic!("{subject}: gpg said {said}"));
        let expected = match (gnupg, *subject) {
            ("BADSIG", _) => "invalid",
            ("NO_PUBKEY", _) => "unverifiable",
            ("REVKEYSIG", _) => "untrusted",
            // Expired when it signed; Erin's key expired only after signing.
            ("EXPKEYSIG", "dave expired before signing") => "untrusted",
            ("EXPKEYSIG", _) => "valid",
            // The deliberate differences.
            ("GOODSIG", "ann as bob" | "ann inline with footer" | "mallory autocrypt") => "untrusted",
            ("GOODSIG", "bob sha1") => "unverifiable",
            ("GOODSIG", _) => "valid",
            _ => unreachable!(),
        };
        assert_eq!(*status, expected, "{subject}: gpg says {gnupg}, we say {signature}");
    }
    let detail = |subject: &str| message(subject)["signature"]["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail("ann mime"), format!("signed by ann@customer.example with key {ann}"));
    assert_eq!(message("ann mime")["signature"]["signer"], "ann@customer.example");
    assert_eq!(detail("ann as bob"), "the key is for ann@customer.example, not the sender bob@customer.example");
    assert!(detail("ann mime altered").starts_with("the mail was changed after it was signed"));
    assert!(detail("ann inline with footer").ends_with("text outside the signed block was not signed"));
    assert_eq!(detail("carl revoked"), "the key was revoked");
    assert!(detail("dave expired before signing").starts_with("the key had expired when it signed (2026-11-11T12:00"));
    assert!(detail("mallory unknown").ends_with("which is not in openpgp_keyring_file"));
    assert!(
        detail("mallory autocrypt").contains("only the mail itself vouches for"),
        "{}",
        detail("mallory autocrypt")
    );
    assert_eq!(detail("bob sha1"), "signed with SHA-1, which is no longer safe");
    // An inline-signed text reads as what was signed: no armor, no signature block, and the
    // line GnuPG dash-escaped ("- - Thanks") as written.
    let shown = message("ann inline")["text"].as_str().unwrap().to_owned();
    assert!(!shown.contains("-----") && shown.contains("- Thanks") && !shown.contains("- - Thanks"), "{shown}");
    // The altered mail is still the customer's, read as it arrived; the signature is no file.
    let altered = message("ann mime altered");
    assert!(altered["text"].as_str().unwrap().contains("order 8"));
    assert_eq!(altered["attachments"], json!([]));
    server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Mail OpenPGP-encrypted to the channel's own key (`openpgp_secret_key_file`, protected by
/// `openpgp_passphrase_file`) is read as what it encrypts, and GnuPG, holding the same key, is
/// the reference: it decrypts exactly the mails we decrypt, to the text we show, and finds a
/// good signature inside exactly where we say `valid`. The mails, as GnuPG makes them for the
/// clients that send them:
/// - Thunderbird: PGP/MIME, signed as its own PGP/MIME layer inside the encryption, the real
///   subject in the protected header ("..." outside), with a legacy display part;
/// - K-9: signed and encrypted in one message, the protected subject on the text part itself;
/// - mutt: an inline block, signed and encrypted;
/// - a protected header naming our own address as sender, which must not make the mail ours;
/// - encrypted to someone else's key only; and damaged on the way. Both stay encrypted, say
///   why, and keep their encrypted content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openpgp_encrypted_mail_is_read_with_our_key_as_gnupg_reads_it() {
    let gpg = Gnupg::new();
    let ann = gpg.key("Ann Example <ann@customer.example>", "ed25519");
    // Ours and another's: GnuPG's default for new keys, a signing key with an encryption subkey.
    gpg.run(&[
        "--passphrase",
        "correct horse",
        "--quick-generate-key",
        SUPPORT.0,
        "future-default",
        "default",
        "never",
    ]);
    let support = gpg.fingerprint(SUPPORT.0);
    gpg.run(&["--quick-generate-key", "Other <other@example.org>", "future-default", "default", "never"]);
    let secret = gpg.run(&["--passphrase", "correct horse", "--export-secret-keys", "--armor", SUPPORT.0]);
    let secret_file = gpg.file("support-secret.asc", &secret);
    let passphrase_file = gpg.file("passphrase", b"correct horse\n");
    let keyring_file = gpg.file("keyring.asc", &gpg.run(&["--export", "--armor", "ann@customer.example"]));
    let encrypt = |name: &str, plaintext: &str, args: &[&str]| {
        gpg.file(name, plaintext.as_bytes());
        let base = ["--trust-model", "always", "--armor", "--encrypt", "-o", "-"];
        String::from_utf8(gpg.run(&[&base[..], args, &[name]].concat())).unwrap().replace('\n', "\r\n")
    };
    let pgp_mime = |armored: &str| {
        format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
             boundary=\"enc-b\"\r\n\r\nThis is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--enc-b\r\n\
             Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\n\
             Version: 1\r\n\r\n--enc-b\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n{armored}\r\n--enc-b--\r\n"
        )
    };
    let to_support = ["-r", SUPPORT.0];

    // Thunderbird: the protected header part, signed by Ann (PGP/MIME), then encrypted.
    let report = "Hello,\r\n\r\nthe portal lets anyone in with the password \"admin\". Grüße, Ann\r\n";
    let protected = format!(
        "Content-Type: multipart/mixed; boundary=\"mix-b\"; protected-headers=\"v1\"\r\n\
         From: Ann Example <ann@customer.example>\r\nTo: {}\r\nSubject: Login bypass on the portal\r\n\r\n\
         --mix-b\r\nContent-Type: text/rfc822-headers; protected-headers=\"v1\"\r\nContent-Disposition: inline\r\n\r\n\
         Subject: Login bypass on the portal\r\n\r\n--mix-b\r\n\
         Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{report}\r\n--mix-b--\r\n",
        SUPPORT.0
    );
    gpg.file("protected.txt", protected.as_bytes());
    let signature = gpg.run(&["-u", &ann, "--detach-sign", "--armor", "-o", "-", "protected.txt"]);
    let signed = format!(
        "Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\";\r\n \
         boundary=\"sig-b\"\r\n\r\n--sig-b\r\n{protected}\r\n--sig-b\r\n\
         Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n\r\n{}\r\n--sig-b--\r\n",
        String::from_utf8_lossy(&signature)
    );
    let thunderbird = pgp_mime(&encrypt("thunderbird.txt", &signed, &to_support));
    // K-9: signed and encrypted in one message; the subject on the text part.
    let k9_text = "The password reset mail goes to the wrong user.\r\n";
    let k9_entity = format!(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
         Subject: Password reset mails go astray\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{k9_text}"
    );
    let k9 = pgp_mime(&encrypt("k9.txt", &k9_entity, &[&to_support[..], &["--sign", "-u", &ann]].concat()));
    // mutt: inline, signed and encrypted, between a greeting and a signature.
    let inline_text = "Dear support,\nthe backup at /backup.tar is public.\nAnn\n";
    let armored = encrypt("inline.txt", inline_text, &[&to_support[..], &["--sign", "-u", &ann]].concat());
    let mutt = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{armored}");
    // A protected header that names us as the sender.
    let spoof_entity = format!(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\nFrom: {}\r\n\
         Subject: Refund approved\r\n\r\nPlease refund order 7.\r\n",
        SUPPORT.0
    );
    let spoof = pgp_mime(&encrypt("spoof.txt", &spoof_entity, &to_support));
    // Encrypted to another key only; and to ours, then damaged on the way (one byte of the
    // encrypted data, in a copy re-armored without the armor's optional checksum).
    let elsewhere = pgp_mime(&encrypt("elsewhere.txt", &k9_entity, &["-r", "other@example.org"]));
    gpg.file("damaged.txt", k9_entity.as_bytes());
    let mut binary = gpg.run(&["--trust-model", "always", "--encrypt", "-r", SUPPORT.0, "-o", "-", "damaged.txt"]);
    let at = binary.len() - 30;
    binary[at] ^= 0x10;
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &binary);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let damaged =
        pgp_mime(&format!("-----BEGIN PGP MESSAGE-----\r\n\r\n{}\r\n-----END PGP MESSAGE-----", lines.join("\r\n")));

    // (subject outside, body, whether it is decrypted)
    let mails = [
        ("...", thunderbird, true),
        ("Encrypted Message", k9, true),
        ("Backup", mutt, true),
        ("Spoof", spoof, true),
        ("Elsewhere", elsewhere, false),
        ("Damaged", damaged, false),
    ];
    let mail = MailServers::start().await;
    let config = format!(
        "openpgp_keyring_file = {keyring_file:?}\nopenpgp_secret_key_file = {secret_file:?}\n\
         openpgp_passphrase_file = {passphrase_file:?}"
    );
    // A wrong passphrase is told before any mail comes.
    let wrong = gpg.file("wrong", b"horse battery\n");
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "check",
            "--config",
            &gpg.file("check.toml", mail.channel("support", &config.replace(&passphrase_file, &wrong)).as_bytes()),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stderr).into_owned();
    assert!(
        said.contains(&format!("openpgp_secret_key_file: {secret_file}: the passphrase does not unlock key {support}")),
        "{said}"
    );
    let (received, server) = received_from_ann(&mail, &config, mails.iter().map(|(s, b, _)| (*s, b.as_str()))).await;
    let nth = |n: usize| {
        let id = format!("signed-{n}@customer.example");
        received.iter().map(|e| e["data"].clone()).find(|m| m["provider"]["message_id"] == id).unwrap()
    };

    // The reference: GnuPG with our secret key and the keyring, on each encrypted block.
    let reference = Gnupg::new();
    reference.run(&["--import", &keyring_file]);
    reference.run(&["--passphrase", "correct horse", "--import", &secret_file]);
    for (n, (subject, body, decrypted)) in mails.iter().enumerate() {
        let found = nth(n);
        let start = body.find("-----BEGIN PGP MESSAGE-----").unwrap();
        let end = body.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
        reference.file("message.asc", &body.as_bytes()[start..end]);
        let out = reference.output(&["--passphrase", "correct horse", "--status-fd", "2", "--decrypt", "message.asc"]);
        let status = String::from_utf8_lossy(&out.stderr).into_owned();
        let gnupg_decrypted = status.contains("[GNUPG:] DECRYPTION_OKAY");
        assert_eq!(gnupg_decrypted, *decrypted, "{subject}: gpg said {status}");
        let encryption = &found["encryption"];
        assert_eq!(
            (&encryption["kind"], &encryption["decrypted"]),
            (&json!("openpgp"), &json!(decrypted)),
            "{subject}: {found}"
        );
        if !decrypted {
            // The encrypted content stays, as a file; nothing of the plaintext shows.
            assert_eq!(found["attachments"][0]["filename"], "encrypted.asc", "{subject}: {found}");
            assert!(!found.to_string().contains("reset"), "{subject}: {found}");
            continue;
        }
        // What we show is what GnuPG decrypted (for PGP/MIME, its text part's body).
        let plaintext = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        let text = found["text"].as_str().unwrap().to_owned();
        let shown = text.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>();
        assert!(
            !shown.is_empty() && shown.iter().all(|l| plaintext.contains(l)),
            "{subject}: we show {text:?}, gpg decrypted {plaintext:?}"
        );
        assert_eq!(found["attachments"], json!([]), "{subject}: {found}");
        let good_signature = status.contains("[GNUPG:] GOODSIG");
        let verified = found["signature"]["status"] == "valid";
        // Thunderbird's signature is its own PGP/MIME layer, which gpg --decrypt does not check.
        if n != 0 {
            assert_eq!(verified, good_signature, "{subject}: gpg said {status}; we say {}", found["signature"]);
        }
    }
    let detail = |n: usize| nth(n)["encryption"]["detail"].as_str().unwrap().to_owned();
    let thunderbird = nth(0);
    assert_eq!(thunderbird["subject"], "Login bypass on the portal");
    assert_eq!(thunderbird["text"].as_str().unwrap().trim_end(), report.trim_end());
    assert_eq!(
        (&thunderbird["signature"]["status"], &thunderbird["signature"]["detail"]),
        (&json!("valid"), &json!(format!("signed by ann@customer.example with key {ann}"))),
    );
    assert_eq!(detail(0), format!("decrypted with key {support} of openpgp_secret_key"));
    let k9 = nth(1);
    assert_eq!(k9["subject"], "Password reset mails go astray");
    assert_eq!(k9["signature"]["status"], "valid", "{k9}");
    let mutt = nth(2);
    assert_eq!(mutt["text"].as_str().unwrap().replace("\r\n", "\n").trim_end(), inline_text.trim_end());
    assert_eq!(mutt["signature"]["status"], "valid", "{mutt}");
    assert_eq!(detail(2), format!("the text was decrypted with key {support} of openpgp_secret_key"));
    // The protected subject is taken, the protected sender is not: the mail is still Ann's.
    let spoofed = nth(3);
    assert_eq!(
        (&spoofed["subject"], &spoofed["from"]["address"]),
        (&json!("Refund approved"), &json!("ann@customer.example"))
    );
    // GnuPG names the subkey it was encrypted to, as we do.
    let listed = String::from_utf8_lossy(&gpg.output(&["--list-keys", "--with-colons", "other@example.org"]).stdout)
        .into_owned();
    let other_subkey = listed.lines().find(|l| l.starts_with("sub:")).unwrap().split(':').nth(4).unwrap().to_owned();
    assert!(
        detail(4).starts_with(&format!("encrypted to key {other_subkey}, which openpgp_secret_key does not hold")),
        "{}",
        detail(4)
    );
    assert!(detail(5).contains("changed or damaged"), "{}", detail(5));
    server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Files encrypted one by one, beside a text in clear (Enigmail's and mutt's inline mode,
/// Mailvelope's `.asc` files, a file encrypted by hand with `gpg --encrypt`), are read with the
/// channel's key as GnuPG reads them: `report.pdf.pgp` (binary) becomes `report.pdf` and
/// `notes.txt.asc` (armored, sent as `application/pgp-encrypted`) `notes.txt`, with the bytes
/// `gpg --decrypt` gives; a file encrypted to another key stays as it came. The message says
/// which files were decrypted, and which not and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openpgp_encrypted_files_are_read_with_our_key_as_gnupg_reads_them() {
    let gpg = Gnupg::new();
    gpg.run(&["--quick-generate-key", SUPPORT.0, "future-default", "default", "never"]);
    gpg.run(&["--quick-generate-key", "Other <other@example.org>", "future-default", "default", "never"]);
    let support = gpg.fingerprint(SUPPORT.0);
    let secret_file = gpg.file("support-secret.asc", &gpg.run(&["--export-secret-keys", "--armor", SUPPORT.0]));
    let pdf = b"%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n".to_vec();
    let notes = "Steps: log in as admin, password admin.\n".as_bytes().to_vec();
    let encrypt = |name: &str, plaintext: &[u8], to: &str, armor: bool| {
        gpg.file(name, plaintext);
        let mut args = vec!["--trust-model", "always", "--encrypt", "-r", to, "-o", "-"];
        if armor {
            args.push("--armor");
        }
        args.push(name);
        gpg.run(&args)
    };
    let base64 = |bytes: &[u8]| {
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let report_pgp = encrypt("report.pdf", &pdf, SUPPORT.0, false);
    let notes_asc = String::from_utf8(encrypt("notes.txt", &notes, SUPPORT.0, true)).unwrap().replace('\n', "\r\n");
    let other_pgp = encrypt("other.pdf", &pdf, "other@example.org", false);
    let body = format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe report and my notes are attached, encrypted.\r\n--b\r\n\
         Content-Type: application/octet-stream; name=\"report.pdf.pgp\"\r\n\
         Content-Disposition: attachment; filename=\"report.pdf.pgp\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--b\r\nContent-Type: application/pgp-encrypted; name=\"notes.txt.asc\"\r\n\
         Content-Disposition: attachment; filename=\"notes.txt.asc\"\r\n\r\n{notes_asc}\r\n--b\r\n\
         Content-Type: application/octet-stream; name=\"other.pdf.pgp\"\r\n\
         Content-Disposition: attachment; filename=\"other.pdf.pgp\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--b--\r\n",
        base64(&report_pgp),
        base64(&other_pgp)
    );
    let mail = MailServers::start().await;
    let config = format!("openpgp_secret_key_file = {secret_file:?}\n");
    let (received, server) = received_from_ann(&mail, &config, [("Files", body.as_str())].into_iter()).await;
    let found = received[0]["data"].clone();
    assert_eq!(found["text"].as_str().unwrap().trim_end(), "The report and my notes are attached, encrypted.");
    // The reference: GnuPG with our key, on each file as it was attached.
    let reference = Gnupg::new();
    reference.run(&["--import", &secret_file]);
    let gnupg = |name: &str, encrypted: &[u8]| {
        let out = reference.output(&["--decrypt", &reference.file(name, encrypted)]);
        out.status.success().then_some(out.stdout)
    };
    let download = |attachment: &Value| {
        let url = format!("{}/v1/attachments/{}", server.base, attachment["id"].as_str().unwrap());
        let request = server.http.get(url).bearer_auth(TOKEN);
        async move { request.send().await.unwrap().bytes().await.unwrap().to_vec() }
    };
    let files = found["attachments"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|a| a["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["report.pdf", "notes.txt", "other.pdf.pgp"], "{found}");
    let expected = [gnupg("report.pdf.pgp", &report_pgp), gnupg("notes.txt.asc", notes_asc.as_bytes()), None];
    assert_eq!(expected[..2], [Some(pdf.clone()), Some(notes.clone())], "GnuPG reads them so");
    assert!(gnupg("other.pdf.pgp", &other_pgp).is_none(), "GnuPG has not the other key");
    assert_eq!(download(&files[0]).await, pdf);
    assert_eq!(download(&files[1]).await, notes);
    assert_eq!(download(&files[2]).await, other_pgp, "kept as it came");
    assert_eq!(
        (&files[0]["content_type"], &files[1]["content_type"]),
        (&json!("application/pdf"), &json!("text/plain"))
    );
    let encryption = &found["encryption"];
    assert_eq!((&encryption["kind"], &encryption["decrypted"]), (&json!("openpgp"), &json!(true)), "{found}");
    let detail = encryption["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "the files report.pdf.pgp, notes.txt.asc were decrypted with key {support} of openpgp_secret_key; \
             other.pdf.pgp: encrypted to key "
        )),
        "{detail}"
    );
    server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Mail S/MIME-encrypted to our own certificate (the one we sign with: `smime_certificate_file`,
/// `smime_key_file`) is read as the mail it encrypts, and Debian's `openssl cms -decrypt`,
/// holding the same key, is the reference: it decrypts exactly the mails we decrypt, to the
/// text we show. The mails, as `openssl cms -encrypt` makes them: AES-256-CBC (Outlook's),
/// AES-128-CBC, Triple-DES (openssl's default, older Outlook's), RSAES-OAEP with SHA-256, AES-256-GCM
/// (AuthEnvelopedData); signed by Ann, then encrypted, as Outlook does (her signature is
/// checked); to another certificate only (RSA, or EC); and damaged on the way. Then, with our
/// certificate an EC (P-256) one, by key agreement: openssl's defaults (Triple-DES, its key
/// wrap, the KDF over SHA-1), AES-256 with the KDF over SHA-256, AES-128-GCM naming our
/// certificate by its key identifier, Outlook's sign-then-encrypt, and to another EC
/// certificate. Those not decrypted say why and keep their `smime.p7m`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smime_encrypted_mail_is_read_with_our_key_as_openssl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let ssl = |args: &[&str]| openssl(dir.path(), args);
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    let pki = SmimePki::new(dir.path(), "/O=Example/CN=Example Mail CA");
    pki.issue("support", RSA_KEY, "ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    pki.issue("ann", RSA_KEY, "ca", &SmimePki::person("ann@customer.example", "emailProtection"));
    pki.issue("other", RSA_KEY, "ca", &SmimePki::person("other@example.com", "emailProtection"));
    pki.issue("bob", EC_KEY, "ca", &SmimePki::person("bob@customer.example", "emailProtection"));
    let report = "the portal lets anyone in with the password admin";
    let entity = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHello,\r\n\r\n{report}.\r\n"
    );
    write("entity.eml", entity.as_bytes());
    // openssl's S/MIME output, its line ends made CRLF as mail carries them.
    let crlf = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
    let encrypt = |input: &str, recipient: &str, extra: &[&str]| {
        crlf(ssl(&[&["cms", "-encrypt", "-in", input, "-recip", recipient][..], extra].concat()))
    };
    // Outlook: opaque-signed by Ann, then encrypted.
    write(
        "signed.eml",
        &ssl(&["cms", "-sign", "-signer", "ann.pem", "-inkey", "ann.key", "-in", "entity.eml", "-nodetach"]),
    );
    // Damaged: the last byte of the next-to-last AES block, so that the padding cannot be right
    // (CBC has no integrity check: a change elsewhere decrypts to garbage, for openssl too).
    let mut der = ssl(&["cms", "-encrypt", "-aes256", "-in", "entity.eml", "-recip", "support.pem", "-outform", "DER"]);
    let at = der.len() - 17;
    der[at] ^= 0x80;
    let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
    let lines: Vec<&str> = base64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let damaged = format!(
        "MIME-Version: 1.0\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\
         Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        lines.join("\r\n")
    );
    // (subject, body, whether it is decrypted), to our RSA certificate.
    let rsa_mails = vec![
        ("aes256", encrypt("entity.eml", "support.pem", &["-aes256"]), true),
        ("aes128", encrypt("entity.eml", "support.pem", &["-aes128"]), true),
        // openssl's default, and older Outlook's.
        ("3des", encrypt("entity.eml", "support.pem", &[]), true),
        (
            "oaep",
            encrypt(
                "entity.eml",
                "support.pem",
                &["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"],
            ),
            true,
        ),
        ("gcm", encrypt("entity.eml", "support.pem", &["-aes-256-gcm"]), true),
        ("outlook signed", encrypt("signed.eml", "support.pem", &["-aes256"]), true),
        ("other", encrypt("entity.eml", "other.pem", &[]), false),
        ("to bob's ec", encrypt("entity.eml", "bob.pem", &[]), false),
        ("damaged", damaged, false),
    ];
    // To our EC (P-256) certificate: by key agreement (ECDH, a KDF, a key wrap).
    pki.issue("support-ec", EC_KEY, "ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    let ec_mails = vec![
        // openssl's defaults: Triple-DES, its key wrapped by RFC 3217, the KDF over SHA-1.
        ("ec 3des", encrypt("entity.eml", "support-ec.pem", &[]), true),
        ("ec aes256", encrypt("entity.eml", "support-ec.pem", &["-aes256", "-keyopt", "ecdh_kdf_md:sha256"]), true),
        // Our certificate named by its subject key identifier.
        ("ec gcm keyid", encrypt("entity.eml", "support-ec.pem", &["-aes-128-gcm", "-keyid"]), true),
        ("ec outlook signed", encrypt("signed.eml", "support-ec.pem", &["-aes256"]), true),
        ("ec other", encrypt("entity.eml", "bob.pem", &["-aes256"]), false),
    ];
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut messages = std::collections::HashMap::new();
    for (ours, mails) in [("support", rsa_mails), ("support-ec", ec_mails)] {
        let mail = MailServers::start().await;
        let config = format!(
            "smime_certificate_file = {:?}\nsmime_key_file = {:?}\nsmime_ca_file = {:?}",
            path(&format!("{ours}.pem")),
            path(&format!("{ours}.key")),
            path("ca.pem")
        );
        let (received, server) =
            received_from_ann(&mail, &config, mails.iter().map(|(s, b, _)| (*s, b.as_str()))).await;
        server.validate_contract(received.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
        server.stop().await;
        for (subject, body, decrypted) in &mails {
            let found = received.iter().map(|e| e["data"].clone()).find(|m| m["subject"] == *subject).unwrap();
            write("mail.eml", body.as_bytes());
            let (certificate, key) = (format!("{ours}.pem"), format!("{ours}.key"));
            let reference = std::process::Command::new("openssl")
                .args(["cms", "-decrypt", "-recip", &certificate, "-inkey", &key, "-in", "mail.eml"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(
                reference.status.success(),
                *decrypted,
                "{subject}: openssl said {}",
                String::from_utf8_lossy(&reference.stderr)
            );
            let encryption = &found["encryption"];
            assert_eq!(
                (&encryption["kind"], &encryption["decrypted"]),
                (&json!("smime"), &json!(decrypted)),
                "{subject}: {found}"
            );
            if *decrypted {
                assert!(found["text"].as_str().unwrap().contains(report), "{subject}: {found}");
                // Outlook's: what openssl decrypts is Ann's opaque-signed mail, which it verifies.
                let plaintext = match subject.ends_with("outlook signed") {
                    true => {
                        write("inner.eml", &reference.stdout);
                        ssl(&["cms", "-verify", "-CAfile", "ca.pem", "-in", "inner.eml"])
                    }
                    false => reference.stdout,
                };
                assert!(String::from_utf8_lossy(&plaintext).contains(report), "{subject}");
                assert_eq!(found["attachments"], json!([]), "{subject}: {found}");
            } else {
                assert_eq!(found["attachments"][0]["filename"], "smime.p7m", "{subject}: {found}");
                assert!(!found.to_string().contains(report), "{subject}: {found}");
            }
            messages.insert(*subject, found);
        }
    }
    let message = |subject: &str| messages[subject].clone();
    let detail = |subject: &str| message(subject)["encryption"]["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail("aes256"), "decrypted with the key of smime_certificate_file");
    let signed = message("outlook signed");
    assert_eq!(
        (&signed["signature"]["kind"], &signed["signature"]["status"]),
        (&json!("smime"), &json!("valid")),
        "{signed}"
    );
    assert_eq!(message("aes256")["signature"], Value::Null);
    for other in ["other", "to bob's ec", "ec other"] {
        assert!(detail(other).starts_with("encrypted to other certificates"), "{other}: {}", detail(other));
    }
    assert!(detail("damaged").contains("changed or damaged"), "{}", detail("damaged"));
    let signed = message("ec outlook signed");
    assert_eq!(signed["signature"]["status"], json!("valid"), "{signed}");
}

/// The answer to Ann's report that the encryption tests send: text, HTML and a file, and a
/// copy to Carl (`copy`: "cc" or "bcc").
fn reply_to_anns_report(copy: &str) -> Value {
    let pdf = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"%PDF-1.4\n%%EOF\n");
    let mut body = json!({"channel": "support", "to": ANN.0, "subject": "Your report",
        "text": "Hello Ann,\n\nthe login bypass is fixed. Thank you!",
        "html": "<p>Hello Ann,</p><p>the login bypass is fixed. Thank you!</p>",
        "attachments": [{"filename": "advisory.pdf", "content_type": "application/pdf", "content_base64": pdf}]});
    body[copy] = json!([CARL.0]);
    body
}

/// With `openpgp_encrypt`, the mail we send goes out PGP/MIME-encrypted to its recipients' keys
/// in `openpgp_keyring_file`, and GnuPG reads it as the recipients' mail clients would: Ann's
/// decrypts it with her key, finds our signature good (our `openpgp_secret_key` signs), and
/// gets the text and the file; Carl, a Bcc, decrypts his copy though his key is not named in
/// it; and we can read it back with our own key, as the copy in our Sent folder. A recipient
/// without a key: not sent (`openpgp_no_key`) with `always`, sent in clear with
/// `when_possible`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_mail_is_openpgp_encrypted_to_its_recipients_keys_as_gnupg_reads_it() {
    // Each mail client's own GnuPG, with its key pair; ours exports the channel's.
    let person = |user_id: &str| {
        let gpg = Gnupg::new();
        gpg.run(&["--quick-generate-key", user_id, "future-default", "default", "never"]);
        gpg
    };
    let (ann, carl, bea, ours) = (person(ANN.0), person(CARL.0), person(BEA.0), person(SUPPORT.0));
    let support = ours.fingerprint(SUPPORT.0);
    let secret_file = ours.file("secret.asc", &ours.run(&["--export-secret-keys", "--armor", SUPPORT.0]));
    // Bea has revoked her key (her revocation certificate, as GnuPG stored it).
    let revocation = bea.home.path().join(format!("openpgp-revocs.d/{}.rev", bea.fingerprint(BEA.0)));
    let revocation = std::fs::read_to_string(revocation).unwrap().replace(":-----BEGIN", "-----BEGIN");
    bea.run(&["--import", &bea.file("bea.rev", revocation.as_bytes())]);
    let keyring =
        [(&ann, ANN.0), (&carl, CARL.0), (&bea, BEA.0)].map(|(gpg, who)| gpg.run(&["--export", "--armor", who]));
    let keyring = keyring.concat();
    let keyring_file = ours.file("keyring.asc", &keyring);
    let our_public = ours.run(&["--export", "--armor", SUPPORT.0]);
    for gpg in [&ann, &carl] {
        gpg.run(&["--import", &gpg.file("support.asc", &our_public)]);
    }
    let subkey = |gpg: &Gnupg, user: &str| {
        let listed = String::from_utf8(gpg.run(&["--with-colons", "--list-keys", user])).unwrap();
        listed.lines().find(|l| l.starts_with("sub:")).unwrap().split(':').nth(4).unwrap().to_owned()
    };
    let config = |policy: &str| {
        format!(
            "openpgp_keyring_file = {keyring_file:?}\nopenpgp_secret_key_file = {secret_file:?}\n\
             openpgp_encrypt = \"{policy}\"\n"
        )
    };
    let mail = MailServers::start().await;
    let mut server = TestServer::start(&mail.channel("support", &config("always"))).await;
    let (queued, delivered) = send_to_ann(&server, &mail, reply_to_anns_report("bcc")).await;
    let text = String::from_utf8_lossy(&delivered).into_owned();
    assert!(text.contains("multipart/encrypted") && text.contains("application/pgp-encrypted"), "{text}");
    // The subject is inside; outside it says "...", as Thunderbird writes it.
    assert!(text.contains("\r\nSubject: ...\r\n") && !text.contains("Your report"), "{text}");
    // The message says how it went.
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(
        sent["encryption"],
        json!({"kind": "openpgp", "decrypted": false,
            "detail": format!("sent OpenPGP-encrypted to the keys of {}, {}, and to ours, which signed it", ANN.0, CARL.0)}),
        "{sent}"
    );
    assert!(!text.contains("login bypass") && !text.contains("advisory.pdf"), "sent in clear:\n{text}");
    let decrypt = |gpg: &Gnupg, mail: &str| {
        let start = mail.find("-----BEGIN PGP MESSAGE-----").unwrap();
        let end = mail.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
        gpg.file("mail.asc", &mail.as_bytes()[start..end]);
        let out = gpg.output(&["--status-fd", "2", "--decrypt", "mail.asc"]);
        (String::from_utf8_lossy(&out.stderr).into_owned(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (status, plaintext) = decrypt(&ann, &text);
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    assert!(status.contains(&format!("[GNUPG:] VALIDSIG {support} ")), "our signature: {status}");
    assert!(plaintext.contains("the login bypass is fixed") && plaintext.contains("advisory.pdf"), "{plaintext}");
    assert!(plaintext.contains("multipart/alternative") && plaintext.contains("text/html"), "{plaintext}");
    // The protected header, as Thunderbird marks it: the subject, and not Carl.
    let protected = &plaintext[..plaintext.find("\r\n\r\n").unwrap()];
    assert!(protected.contains("protected-headers=\"v1\""), "{protected}");
    for field in ["Subject: Your report", &format!("To: {}", ANN.0), "From: ", "Message-ID: <msg_", "Date: "] {
        assert!(protected.contains(field), "no {field} in the protected header:\n{protected}");
    }
    assert!(!protected.contains(CARL.0), "{protected}");
    // Named: Ann's key and ours; Carl's hidden (key ID zero).
    let mut encrypted_to: Vec<String> = status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] ENC_TO "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    encrypted_to.sort();
    let mut expected = vec![subkey(&ann, ANN.0), subkey(&ours, SUPPORT.0), "0000000000000000".to_owned()];
    expected.sort();
    assert_eq!(encrypted_to, expected, "{status}");
    let carls = loop_until(|| async { mail.inbox(CARL).await.pop() }).await;
    let (status, plaintext) = decrypt(&carl, &String::from_utf8_lossy(&carls.2));
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "Carl cannot read his copy: {status}");
    assert!(plaintext.contains("the login bypass is fixed"), "{plaintext}");
    // We read it back with our key, signed by ourselves.
    let mut reading = support_channel_config();
    reading.openpgp_secret_keys = switchboard::channels::email::openpgp_decrypt::SecretKeys::load(
        &std::fs::read_to_string(&secret_file).unwrap(),
        None,
    )
    .unwrap();
    let ours_read = switchboard::channels::email::mime::to_raw_inbound(&reading, delivered);
    assert!(ours_read.encryption.as_ref().is_some_and(|e| e.decrypted), "{:?}", ours_read.encryption);
    assert!(ours_read.text.as_deref().unwrap().contains("the login bypass is fixed"));
    assert_eq!(ours_read.subject.as_deref(), Some("Your report"));
    assert_eq!(ours_read.attachments.len(), 1, "{:?}", ours_read.attachments);

    // A recipient without a key, and one whose key is revoked.
    let to_stranger = json!({"channel": "support", "to": STRANGER.0, "subject": "Hi", "text": "In clear?"});
    let to_bea = json!({"channel": "support", "to": BEA.0, "subject": "Hi", "text": "In clear?"});
    for (who, body) in [(STRANGER, to_stranger.clone()), (BEA, to_bea)] {
        let (_, queued) = server.post("/v1/messages", body).await;
        let failed = server.wait_status(queued["id"].as_str().unwrap(), "failed").await;
        let error = &failed["error"];
        assert_eq!((&error["code"], &error["permanent"]), (&json!("openpgp_no_key"), &json!(true)), "{failed}");
        assert!(error["message"].as_str().unwrap().contains(who.0), "{failed}");
        assert!(mail.inbox(who).await.is_empty());
    }
    // The subject outside, for recipients whose mail client shows no protected subject.
    let subject_outside = format!("{}openpgp_encrypt_subject = false\n", config("when_possible"));
    server.reload(&mail.channel("support", &subject_outside)).await;
    mail.delete_all_but(ANN, "none").await;
    let body = json!({"channel": "support", "to": ANN.0, "subject": "Your report, again", "text": "Fixed."});
    let (_, delivered) = send_to_ann(&server, &mail, body).await;
    let text = String::from_utf8_lossy(&delivered).into_owned();
    assert!(text.contains("multipart/encrypted") && text.contains("\r\nSubject: Re: Your report, again\r\n"), "{text}");
    assert!(!decrypt(&ann, &text).1.contains("protected-headers"), "{text}");
    let (_, queued) = server.post("/v1/messages", to_stranger).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let clear = loop_until(|| async { mail.inbox(STRANGER).await.pop() }).await;
    let clear = String::from_utf8_lossy(&clear.2).into_owned();
    assert!(clear.contains("In clear?") && !clear.contains("multipart/encrypted"), "{clear}");
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    let why = format!(
        "sent in clear (when_possible): no usable OpenPGP key for {} in openpgp_keyring_file or from their \
         Autocrypt header",
        STRANGER.0
    );
    assert_eq!(sent["encryption"], json!({"kind": "none", "decrypted": false, "detail": why}), "{sent}");
    let events = server.all_events().await;
    server.validate_contract(events.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Autocrypt with Delta Chat's core as the customer's mail client: Ann writes to us in clear,
/// and her Autocrypt header's key is kept; with `openpgp_encrypt = "always"` and no keyring
/// entry for her, our answer goes out encrypted to that key (the message says so) and carries
/// ours in our Autocrypt header; Delta Chat decrypts and shows it end-to-end encrypted, and
/// answers encrypted to our key, which we decrypt. A stranger without a key is not written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_chat_and_we_exchange_keys_by_autocrypt_and_then_write_encrypted() {
    let ours = Gnupg::new();
    ours.run(&["--quick-generate-key", SUPPORT.0, "future-default", "default", "never"]);
    let secret_file = ours.file("secret.asc", &ours.run(&["--export-secret-keys", "--armor", SUPPORT.0]));
    let config = format!("openpgp_secret_key_file = {secret_file:?}\nopenpgp_encrypt = \"always\"\n");
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", &config)).await;

    // Delta Chat, as Ann, on her mailbox.
    let accounts = tempfile::tempdir().unwrap();
    let python = std::env::var("SB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ports = [mail.imap_port.to_string(), mail.smtp_port.to_string()];
    let peer = std::process::Command::new(python)
        .arg(format!("{}/tests/python/deltachat_peer.py", env!("CARGO_MANIFEST_DIR")))
        .arg(accounts.path())
        .args([&ports[0], &ports[1], ANN.0, ANN.1, SUPPORT.0])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python (tests/run.sh installs deltachat-rpc-client and its server)");
    let peer = tokio::task::spawn_blocking(move || peer.wait_with_output());

    // Her first mail, in clear, with her key in its Autocrypt header.
    let first = first_received(&server).await;
    assert_eq!(first["data"]["from"]["address"], json!(ANN.0), "{first}");
    assert_eq!(first["data"]["encryption"], Value::Null, "{first}");
    let body = json!({"conversation_id": first["data"]["conversation_id"], "text": "We sent a corrected invoice."});
    let (_, queued) = server.post("/v1/messages", body).await;
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let detail = format!("sent OpenPGP-encrypted to the keys of {} (Autocrypt), and to ours, which signed it", ANN.0);
    assert_eq!(sent["encryption"]["detail"], json!(detail), "{sent}");

    // Delta Chat decrypted it, and answered encrypted to the key of our Autocrypt header.
    let out = peer.await.unwrap().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = format!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Delta Chat failed:\n{log}");
    let answer: Value =
        said.lines().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("answer").is_some())).unwrap();
    assert_eq!(answer, json!({"answer": "We sent a corrected invoice.", "encrypted": true}), "{log}");
    let second = loop_until(|| async {
        let events = server.all_events().await;
        events.into_iter().filter(|e| e["type"] == "message.received").nth(1)
    })
    .await;
    let data = &second["data"];
    assert_eq!(data["encryption"]["decrypted"], json!(true), "{second}");
    assert!(data["text"].as_str().unwrap().contains("Thanks, the new one is right."), "{second}");
    assert_eq!(data["conversation_id"], first["data"]["conversation_id"], "{second}");

    // No key for the stranger: with `always`, nothing goes.
    let (_, queued) = server.post("/v1/messages", json!({"channel": "support", "to": STRANGER.0, "text": "Hi"})).await;
    let failed = server.wait_status(queued["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["code"], json!("openpgp_no_key"), "{failed}");
    let events = server.all_events().await;
    server.validate_contract(events.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// With `smime_encrypt`, the mail we send goes out S/MIME-encrypted (EnvelopedData) to its
/// recipients' certificates in `smime_recipients_file`, and Debian's `openssl cms -decrypt` is
/// each recipient's mail client: Ann (RSA) decrypts it and finds our signature inside, which
/// `openssl cms -verify` accepts, over the text, the HTML and the file; Carl (EC P-256, in Cc)
/// decrypts his copy by key agreement; our own key decrypts it too (the Sent copy), and our
/// reading of it says decrypted and signed. A Bcc recipient (Carl) gets a copy of his own,
/// encrypted to him and us alone: neither can open the other's copy, and Ann's does not name
/// him. With `always`, a recipient whose certificate is self-signed (the stranger) or for
/// signing only (Bea) fails (`smime_no_certificate`) and reaches no one. Then Bea writes, signed with a new
/// certificate: it is kept, and our next mail to her is encrypted to it. With `when_possible`
/// a mail to the stranger goes in clear, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_mail_is_smime_encrypted_to_its_recipients_certificates_as_openssl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let ssl = |args: &[&str]| openssl(dir.path(), args);
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    let pki = SmimePki::new(dir.path(), "/O=Example/CN=Example Root CA");
    let intermediate = pki.issue("mail-ca", RSA_KEY, "ca", SmimePki::CA);
    let support = pki.issue("support", RSA_KEY, "mail-ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    let ann = pki.issue("ann", RSA_KEY, "mail-ca", &SmimePki::person(ANN.0, "emailProtection"));
    let person_with_usage = |address: &str, usage: &str| {
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,{usage}\nextendedKeyUsage=emailProtection\n\
             subjectAltName=email:{address}\nsubjectKeyIdentifier=hash\n"
        )
    };
    let carl = pki.issue("carl", EC_KEY, "mail-ca", &person_with_usage(CARL.0, "digitalSignature,keyAgreement"));
    let bea = pki.issue("bea", RSA_KEY, "mail-ca", &person_with_usage(BEA.0, "digitalSignature"));
    ssl(&[
        &["req", "-x509", "-nodes", "-keyout", "stranger.key", "-out", "stranger.pem", "-days", "30"][..],
        RSA_KEY,
        &["-subj", "/CN=Stranger", "-addext", &format!("subjectAltName=email:{}", STRANGER.0)],
    ]
    .concat());
    let stranger = std::fs::read_to_string(dir.path().join("stranger.pem")).unwrap();
    write("support-chain.pem", format!("{support}{intermediate}").as_bytes());
    write("recipients.pem", format!("{ann}{carl}{bea}{stranger}{intermediate}").as_bytes());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let config = |policy: &str| {
        format!(
            "smime_certificate_file = {:?}\nsmime_key_file = {:?}\nsmime_ca_file = {:?}\n\
             smime_recipients_file = {:?}\nsmime_encrypt = \"{policy}\"\n",
            path("support-chain.pem"),
            path("support.key"),
            path("ca.pem"),
            path("recipients.pem")
        )
    };
    let mail = MailServers::start().await;
    let mut server = TestServer::start(&mail.channel("support", &config("always"))).await;
    let (queued, delivered) = send_to_ann(&server, &mail, reply_to_anns_report("cc")).await;
    let text = String::from_utf8_lossy(&delivered).into_owned();
    assert!(text.contains("application/pkcs7-mime") && text.contains("smime-type=enveloped-data"), "{text}");
    assert!(!text.contains("login bypass") && !text.contains("advisory.pdf"), "sent in clear:\n{text}");
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(
        sent["encryption"],
        json!({"kind": "smime", "decrypted": false,
            "detail": format!("sent S/MIME-encrypted to the certificates of {}, {}, and to ours", ANN.0, CARL.0)}),
        "{sent}"
    );
    // Each recipient's openssl decrypts it with their key, and finds our signature inside.
    let decrypts = |who: &str, mail: &[u8]| {
        write("received.eml", mail);
        let (certificate, key) = (format!("{who}.pem"), format!("{who}.key"));
        ssl(&["cms", "-decrypt", "-recip", &certificate, "-inkey", &key, "-in", "received.eml", "-out", "inner.eml"]);
        let inner = std::fs::read_to_string(dir.path().join("inner.eml")).unwrap();
        assert!(inner.contains("multipart/signed"), "{who}: {inner}");
        let verified = ssl(&["cms", "-verify", "-CAfile", "ca.pem", "-purpose", "smimesign", "-in", "inner.eml"]);
        String::from_utf8_lossy(&verified).into_owned()
    };
    for who in ["ann", "support"] {
        let plaintext = decrypts(who, &delivered);
        assert!(plaintext.contains("the login bypass is fixed") && plaintext.contains("advisory.pdf"), "{plaintext}");
        assert!(plaintext.contains("text/html"), "{plaintext}");
    }
    let carls = loop_until(|| async { mail.inbox(CARL).await.pop() }).await;
    assert!(decrypts("carl", &carls.2).contains("the login bypass is fixed"), "Carl cannot read his copy");
    // Our own reading: decrypted with our key, our signature inside valid.
    let mut reading = support_channel_config();
    reading.smime_certificate_pem = Some(std::fs::read(dir.path().join("support-chain.pem")).unwrap());
    reading.smime_key =
        Some(switchboard::config::Secret::new(std::fs::read_to_string(dir.path().join("support.key")).unwrap()));
    reading.smime_ca_pem = Some(std::fs::read(dir.path().join("ca.pem")).unwrap());
    let ours_read = switchboard::channels::email::mime::to_raw_inbound(&reading, delivered);
    assert!(
        ours_read.encryption.as_ref().is_some_and(|e| e.decrypted && e.kind == "smime"),
        "{:?}",
        ours_read.encryption
    );
    let signature = serde_json::to_value(&ours_read.signature).unwrap();
    assert_eq!((&signature["status"], &signature["signer"]), (&json!("valid"), &json!(SUPPORT.0)), "{signature}");
    assert!(ours_read.text.as_deref().unwrap().contains("the login bypass is fixed"));
    assert_eq!(ours_read.attachments.len(), 1, "{:?}", ours_read.attachments);

    // Carl in Bcc: a copy of his own, sent before Ann's; each encrypted to its reader alone.
    let bcc = json!({"channel": "support", "to": ANN.0, "bcc": [CARL.0], "subject": "Bcc", "text": "Carl unseen."});
    let (_, queued) = server.post("/v1/messages", bcc).await;
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let detail = format!(
        "sent S/MIME-encrypted to the certificates of {}, and to ours; Bcc {} each in a copy of their own, \
         encrypted to theirs",
        ANN.0, CARL.0
    );
    assert_eq!(sent["encryption"]["detail"], json!(detail), "{sent}");
    let is_bcc_mail =
        |raw: &Vec<u8>| String::from_utf8_lossy(raw).lines().any(|l| l.starts_with("Subject: ") && l.ends_with("Bcc"));
    let copy_of = |who: (&'static str, &'static str)| {
        let mail = &mail;
        loop_until(move || async move { mail.inbox(who).await.into_iter().map(|(_, _, raw)| raw).find(is_bcc_mail) })
    };
    let (anns, carls) = (copy_of(ANN).await, copy_of(CARL).await);
    for who in [ANN, CARL] {
        let copies = mail.inbox(who).await.into_iter().filter(|(_, _, raw)| is_bcc_mail(raw)).count();
        assert_eq!(copies, 1, "{} got other than one copy", who.0);
    }
    assert!(decrypts("ann", &anns).contains("Carl unseen."), "Ann cannot read hers");
    assert!(decrypts("carl", &carls).contains("Carl unseen."), "Carl cannot read his");
    assert!(!String::from_utf8_lossy(&anns).contains(CARL.0), "Ann's copy names Carl");
    for (who, copy) in [("carl", &anns), ("ann", &carls)] {
        write("received.eml", copy);
        let (certificate, key) = (format!("{who}.pem"), format!("{who}.key"));
        let opened = openssl_succeeds(
            dir.path(),
            &["cms", "-decrypt", "-recip", &certificate, "-inkey", &key, "-in", "received.eml", "-out", "inner.eml"],
        );
        assert!(!opened, "{who} opened a copy not encrypted to them");
    }

    // A self-signed certificate and a certificate for signing only.
    mail.delete_all_but(ANN, "none").await;
    let to_stranger = json!({"channel": "support", "to": STRANGER.0, "subject": "Hi", "text": "In clear?"});
    let refused = [
        (to_stranger.clone(), "smime_no_certificate", STRANGER.0),
        (
            json!({"channel": "support", "to": BEA.0, "subject": "Hi", "text": "In clear?"}),
            "smime_no_certificate",
            BEA.0,
        ),
    ];
    for (body, code, named) in refused {
        let (_, queued) = server.post("/v1/messages", body).await;
        let failed = server.wait_status(queued["id"].as_str().unwrap(), "failed").await;
        let error = &failed["error"];
        assert_eq!((&error["code"], &error["permanent"]), (&json!(code), &json!(true)), "{failed}");
        assert!(error["message"].as_str().unwrap().contains(named), "{failed}");
    }
    for who in [STRANGER, BEA] {
        assert!(mail.inbox(who).await.is_empty(), "{} got a mail", who.0);
    }
    // Bea writes to us, signed with her new certificate (for encryption too), whose
    // intermediate her signature carries: it is kept, and our next mail to her is encrypted
    // to it, as her Outlook would expect.
    pki.issue("bea2", RSA_KEY, "mail-ca", &SmimePki::person(BEA.0, "emailProtection"));
    write("bea.eml", b"Content-Type: text/plain\r\n\r\nPlease send the advisory encrypted.\r\n");
    let signed = ssl(&[
        "cms",
        "-sign",
        "-signer",
        "bea2.pem",
        "-inkey",
        "bea2.key",
        "-certfile",
        "mail-ca.pem",
        "-in",
        "bea.eml",
    ]);
    let signed = String::from_utf8(signed).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
    let header = format!(
        "From: Bea <{}>\r\nTo: {}\r\nSubject: Advisory\r\nMessage-ID: <bea-signed@example.org>\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n",
        BEA.0, SUPPORT.0
    );
    mail.append(SUPPORT, &format!("{header}{signed}")).await;
    loop_until(|| async {
        let events = server.all_events().await;
        events
            .iter()
            .any(|e| e["type"] == "message.received" && e["data"]["signature"]["status"] == "valid")
            .then_some(())
    })
    .await;
    let (_, queued) =
        server.post("/v1/messages", json!({"channel": "support", "to": BEA.0, "text": "Attached."})).await;
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let detail = format!("sent S/MIME-encrypted to the certificates of {}, and to ours", BEA.0);
    assert_eq!(sent["encryption"]["detail"], json!(detail), "{sent}");
    let beas = loop_until(|| async { mail.inbox(BEA).await.pop() }).await;
    assert!(decrypts("bea2", &beas.2).contains("Attached."), "Bea cannot read it");
    server.reload(&mail.channel("support", &config("when_possible"))).await;
    let (_, queued) = server.post("/v1/messages", to_stranger).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let clear = loop_until(|| async { mail.inbox(STRANGER).await.pop() }).await;
    let clear = String::from_utf8_lossy(&clear.2).into_owned();
    assert!(clear.contains("In clear?") && clear.contains("multipart/signed"), "{clear}");
    assert!(!clear.contains("enveloped-data"), "{clear}");
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(sent["encryption"]["kind"], json!("none"), "{sent}");
    let why = sent["encryption"]["detail"].as_str().unwrap();
    assert!(why.starts_with("sent in clear (when_possible): ") && why.contains(STRANGER.0), "{sent}");
    let events = server.all_events().await;
    server.validate_contract(events.iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// An S/MIME-encrypted mail with a Bcc recipient goes out as two transactions: Carl's copy,
/// then Ann's mail. When Ann's server defers her (greylisting, 450 4.2.0) after Carl's copy
/// was taken, the retry sends Ann's mail alone: Carl does not get his copy twice. What the
/// channel kept to know that is gone once the message is sent, and the next message's copy
/// goes out as usual. A message whose mail is refused for good after Carl's copy was taken
/// fails, and leaves nothing kept behind either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_mail_was_deferred_does_not_send_a_bcc_copy_again() {
    let dir = tempfile::tempdir().unwrap();
    let pki = SmimePki::new(dir.path(), "/O=Example/CN=Example Root CA");
    let support = pki.issue("support", RSA_KEY, "ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    let ann = pki.issue("ann", RSA_KEY, "ca", &SmimePki::person(ANN.0, "emailProtection"));
    let carl = pki.issue("carl", RSA_KEY, "ca", &SmimePki::person(CARL.0, "emailProtection"));
    // No mailbox: the server refuses her mail for good (550).
    let nobody = pki.issue("nobody", RSA_KEY, "ca", &SmimePki::person("nobody@example.org", "emailProtection"));
    std::fs::write(dir.path().join("support.pem"), support).unwrap();
    std::fs::write(dir.path().join("recipients.pem"), format!("{ann}{carl}{nobody}")).unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let smime = format!(
        "smime_certificate_file = {:?}\nsmime_key_file = {:?}\nsmime_ca_file = {:?}\n\
         smime_recipients_file = {:?}\nsmime_encrypt = \"always\"\n",
        path("support.pem"),
        path("support.key"),
        path("ca.pem"),
        path("recipients.pem")
    );
    let mail = MailServers::start_with_greylisting(&[ANN.0]).await;
    let outbound = "\n[outbound]\nretry_schedule = [\"300ms\", \"300ms\", \"300ms\"]\n";
    let server = TestServer::start(&(mail.channel("support", &smime) + outbound)).await;
    let is_copy_of = |subject: &'static str| {
        // "Re: Next" once the conversation has a mail before it.
        move |raw: &Vec<u8>| {
            String::from_utf8_lossy(raw).lines().any(|l| l.starts_with("Subject: ") && l.ends_with(subject))
        }
    };
    let received = |who: (&'static str, &'static str), subject: &'static str| {
        let mail = &mail;
        async move { mail.inbox(who).await.into_iter().filter(|(_, _, raw)| is_copy_of(subject)(raw)).count() }
    };

    let deferred = json!({"channel": "support", "to": ANN.0, "bcc": [CARL.0], "subject": "Deferred", "text": "Once."});
    let (_, queued) = server.post("/v1/messages", deferred).await;
    let id = queued["id"].as_str().unwrap().to_owned();
    server.wait_status(&id, "sent").await;
    assert!(
        mail.smtp_log().contains(&format!("RCPT {} greylisted", ANN.0)),
        "Ann's server never deferred her:\n{}",
        mail.smtp_log()
    );
    loop_until(|| async { (received(ANN, "Deferred").await > 0).then_some(()) }).await;
    loop_until(|| async { (received(CARL, "Deferred").await > 0).then_some(()) }).await;
    // The retry is done when the message is sent; a second copy would be in Carl's inbox by now,
    // but LMTP delivery follows the SMTP answer: give it the time one more delivery takes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(CARL, "Deferred").await, 1, "Carl got his Bcc copy other than once");
    assert_eq!(received(ANN, "Deferred").await, 1, "Ann got the mail other than once");
    let db = rusqlite::Connection::open(server.dir.path().join("switchboard.db")).unwrap();
    let kept = || -> i64 {
        db.query_row("SELECT count(*) FROM channel_state WHERE key LIKE 'sending/%'", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(kept(), 0, "the record of Carl's copy outlived the message");

    // The next message is not deferred: Carl's copy and Ann's mail go out on the first attempt.
    let next = json!({"channel": "support", "to": ANN.0, "bcc": [CARL.0], "subject": "Next", "text": "Twice?"});
    let (_, queued) = server.post("/v1/messages", next).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    loop_until(|| async { (received(CARL, "Next").await == 1 && received(ANN, "Next").await == 1).then_some(()) })
        .await;

    // Refused for good after Carl's copy went: the message fails (Carl keeps his copy).
    let refused = json!({"channel": "support", "to": "nobody@example.org", "bcc": [CARL.0], "subject": "Nobody",
                         "text": "Lost?"});
    let (_, queued) = server.post("/v1/messages", refused).await;
    let failed = server.wait_status(queued["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["permanent"], json!(true), "{failed}");
    loop_until(|| async { (received(CARL, "Nobody").await == 1).then_some(()) }).await;
    assert_eq!(kept(), 0, "the record of Carl's copy outlived the failed message");
    server.stop().await;
}

/// With a certificate and key (`smime_certificate_file`, `smime_key_file`), the mail we send is
/// S/MIME clear-signed, and Debian's `openssl cms -verify` accepts it as Ann's mail client would:
/// with only the company's root CA (the intermediate travels in the signature), for S/MIME
/// signing, over the text, the HTML and the attachment as Ann's Dovecot mailbox got them. Our
/// own reading of the delivered mail says `valid`. An RSA key, then (after a reload) an ECDSA
/// P-256 one. Mail from an alias the certificate does not name goes out unsigned. A key that is
/// not the certificate's, and a certificate for another address, are refused by validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_mail_is_signed_when_the_channel_has_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    let pki = SmimePki::new(dir.path(), "/O=Example/CN=Example Root CA");
    let intermediate = pki.issue("mail-ca", RSA_KEY, "ca", SmimePki::CA);
    let support_rsa = pki.issue("support-rsa", RSA_KEY, "mail-ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    let support_ec = pki.issue("support-ec", EC_KEY, "mail-ca", &SmimePki::person(SUPPORT.0, "emailProtection"));
    let other = pki.issue("other", RSA_KEY, "mail-ca", &SmimePki::person("someone@else.example", "emailProtection"));
    write("support-rsa-chain.pem", &format!("{support_rsa}{intermediate}"));
    write("support-ec-chain.pem", &format!("{support_ec}{intermediate}"));
    write("other-chain.pem", &format!("{other}{intermediate}"));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let signing = |chain: &str, key: &str| {
        format!(
            "aliases = [\"sales@example.com\"]\nsmime_certificate_file = {:?}\nsmime_key_file = {:?}\n",
            path(chain),
            path(key)
        )
    };

    let mail = MailServers::start().await;
    let mut server =
        TestServer::start(&mail.channel("support", &signing("support-rsa-chain.pem", "support-rsa.key"))).await;
    // When the certificate expires is there to alert on, as openssl reads it.
    let not_after =
        String::from_utf8(openssl(dir.path(), &["x509", "-noout", "-enddate", "-in", "support-rsa.pem"])).unwrap();
    let date = std::process::Command::new("date")
        .args(["-u", "+%s", "-d", not_after.trim().trim_start_matches("notAfter=")])
        .output()
        .unwrap();
    let expires = String::from_utf8(date.stdout).unwrap().trim().to_owned();
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let series = "switchboard_smime_certificate_expiry_timestamp_seconds{channel=\"support\"} ";
    let gauge =
        metrics.lines().find_map(|l| l.strip_prefix(series)).unwrap_or_else(|| panic!("no {series}in:\n{metrics}"));
    assert_eq!(gauge.trim(), expires, "{not_after}");
    let mut reading = support_channel_config();
    reading.smime_ca_pem = Some(std::fs::read(dir.path().join("ca.pem")).unwrap());
    let pdf = b"%PDF-1.4\n1 0 obj <</Type/Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n";
    let pdf = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pdf);
    for (n, micalg) in [(0, "sha-256"), (1, "sha-256")] {
        let body = json!({"channel": "support", "to": ANN.0, "subject": format!("Invoice {n}"),
            "text": "Hello Ann,\n\nyour invoice for order 7 is attached. Grüße aus München!",
            "html": "<p>Hello Ann,</p><p>your invoice for order 7 is attached. Grüße aus München!</p>",
            "attachments": [{"filename": "invoice-7.pdf", "content_type": "application/pdf", "content_base64": pdf}]});
        let (_, delivered) = send_to_ann(&server, &mail, body).await;
        mail.delete_all_but(ANN, "none").await;
        let text = String::from_utf8_lossy(&delivered).into_owned();
        assert!(text.contains("multipart/signed") && text.contains(&format!("micalg=\"{micalg}\"")), "{text}");
        write("delivered.eml", &text);
        let verified = openssl_succeeds(
            dir.path(),
            &[
                "cms",
                "-verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "smimesign",
                "-in",
                "delivered.eml",
                "-out",
                "signed.eml",
            ],
        );
        assert!(verified, "openssl refuses our signature:\n{text}");
        let signed = std::fs::read_to_string(dir.path().join("signed.eml")).unwrap();
        assert!(signed.contains("multipart/alternative") && signed.contains("invoice-7.pdf"), "{signed}");
        let raw = switchboard::channels::email::mime::to_raw_inbound(&reading, delivered);
        let signature = serde_json::to_value(raw.signature).unwrap();
        assert_eq!((&signature["status"], &signature["signer"]), (&json!("valid"), &json!(SUPPORT.0)), "{signature}");
        assert_eq!(raw.attachments.len(), 1, "the signature is no file: {:?}", raw.attachments);
        if n == 0 {
            // The same with an ECDSA P-256 key.
            server.reload(&mail.channel("support", &signing("support-ec-chain.pem", "support-ec.key"))).await;
        }
    }

    // The answer to a mail to an alias the certificate does not name goes out unsigned.
    let to_sales =
        crate::mail_servers::mail(ANN.0, "Sales <sales@example.com>", "Quote", "q@example.org", "", "Price?");
    mail.append(SUPPORT, &to_sales).await;
    let cnv = first_received(&server).await["data"]["conversation_id"].clone();
    let (_, delivered) = send_to_ann(&server, &mail, json!({"conversation_id": cnv, "text": "10 EUR."})).await;
    let text = String::from_utf8_lossy(&delivered);
    assert!(text.contains("<sales@example.com>") && !text.contains("multipart/signed"), "{text}");
    // Without the certificate (a reload), its gauge is gone rather than left to alert.
    server.reload(&mail.channel("support", "")).await;
    let metrics = server.metrics().await;
    assert!(!metrics.contains("switchboard_smime_certificate_expiry"), "{metrics}");
    server.stop().await;

    // Validation names a key that is not the certificate's and a certificate for someone else.
    for (chain, key, problem) in [
        ("support-rsa-chain.pem", "support-ec.key", "the private key is not the certificate's"),
        ("other-chain.pem", "other.key", "the certificate is for someone@else.example, not for support@example.com"),
    ] {
        write("check.toml", &mail.channel("support", &signing(chain, key)));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["check", "--config", &path("check.toml")])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let expected = format!("channels[0].smime_certificate_file: {}: {problem}", path(chain));
        assert!(text.lines().any(|l| l.starts_with(&expected)), "missing `{expected}` in:\n{text}");
    }
}

/// Outlook "Rich Text" sent through Exchange may carry the message's only body inside
/// winmail.dat: as RTF (compressed; HTML or text Outlook encapsulated in it, or an RTF
/// document), as HTML, or as text. That body reaches the helpdesk as the message's html or
/// text, for real Outlook-written samples: the RTF as Debian's `tnef --save-body` decompresses
/// it and RTFDE (HTML/text encapsulated in RTF) or striprtf (an RTF document) reads it, the HTML
/// and text as Debian's `tnef` writes them. A mail with a text part of its own keeps that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_kept_only_in_winmail_dat_reaches_the_helpdesk() {
    // Plain RTF, encapsulated text, encapsulated HTML (two), HTML, RTF beside text (two).
    let names = ["rtf", "long-filename", "umlaut", "multi-value-attribute", "body", "triples", "MAPI_OBJECT"];
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let mut expected: Vec<Vec<(String, String)>> = Vec::new();
    let mut rtf_files = Vec::new();
    let dirs: Vec<tempfile::TempDir> = names.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    for (n, name) in names.iter().enumerate() {
        let (path, stream) = tnef_sample(name);
        // Debian's tnef writes every body the stream has: body.rtf (decompressed), .html, .txt.
        let status = std::process::Command::new("tnef")
            .args(["--save-body=body", "--body-pref=ALL", "-f"])
            .arg(&path)
            .current_dir(dirs[n].path())
            .status()
            .expect("Debian's tnef (tests/run.sh installs it)");
        assert!(status.success(), "tnef failed on {name}");
        let read = |file: &str| std::fs::read(dirs[n].path().join(file)).ok();
        let mut references = Vec::new();
        if let Some(html) = read("body.html") {
            references.push(("html".to_owned(), String::from_utf8_lossy(&html).into_owned()));
        }
        if let Some(text) = read("body.txt") {
            references.push(("text".to_owned(), text.iter().map(|b| char::from(*b)).collect()));
        }
        if read("body.rtf").is_some() {
            rtf_files.push((n, dirs[n].path().join("body.rtf").to_string_lossy().into_owned()));
        }
        expected.push(references);
        // As Exchange sends it: the whole mail one winmail.dat.
        let text = format!(
            "From: Ann <{}>\nTo: {}\nSubject: Rich {n}\nMessage-ID: <rich-{n}@example.org>\nMIME-Version: 1.0\n\
             Content-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n{}\n",
            ANN.0,
            SUPPORT.0,
            base64_lines(&stream)
        );
        mail.append(SUPPORT, &text).await;
    }
    let paths: Vec<&str> = rtf_files.iter().map(|(_, p)| p.as_str()).collect();
    let read: Vec<Value> = serde_json::from_str(&python("rtf_body.py", &[], &json!(paths))).unwrap();
    for ((n, _), reference) in rtf_files.iter().zip(read) {
        let kind = reference["kind"].as_str().unwrap().to_owned();
        expected[*n].push((kind, reference["content"].as_str().unwrap().to_owned()));
    }
    assert_eq!(rtf_files.len(), 6, "an RTF body in each sample but `body`: {rtf_files:?}");
    // A mail with a text of its own beside the winmail.dat keeps it.
    let (_, umlaut) = tnef_sample("umlaut");
    let with_text = format!(
        "From: Ann <{}>\nTo: {}\nSubject: With text\nMessage-ID: <rich-text@example.org>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"T\"\n\n--T\nContent-Type: text/plain; charset=utf-8\n\n\
         Anbei.\n--T\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--T--\n",
        ANN.0,
        SUPPORT.0,
        base64_lines(&umlaut)
    );
    mail.append(SUPPORT, &with_text).await;
    nth_received(&helpdesk, names.len()).await;

    let words = |s: &str| s.replace('\0', "").split_whitespace().collect::<Vec<_>>().join(" ");
    let received = helpdesk.events_of("message.received");
    for (n, name) in names.iter().enumerate() {
        let message = &received.iter().find(|e| e["data"]["subject"] == format!("Rich {n}")).unwrap()["data"];
        assert!(!expected[n].is_empty(), "{name}: Debian's tnef found a body");
        for (kind, reference) in &expected[n] {
            let got = message[kind.as_str()].as_str().unwrap_or_else(|| panic!("{name}: no {kind} in {message}"));
            assert_eq!(words(got), words(reference), "{name}: {kind}");
        }
        assert!(message["text"].as_str().is_some_and(|t| !t.trim().is_empty()), "{name}: text for the helpdesk");
        // The files in it are attachments; a winmail.dat that held only the body is not one.
        let names: Vec<&str> =
            message["attachments"].as_array().unwrap().iter().filter_map(|a| a["filename"].as_str()).collect();
        assert!(!names.contains(&"winmail.dat"), "{name}: {names:?}");
    }
    let rtf_only = &received.iter().find(|e| e["data"]["subject"] == "Rich 0").unwrap()["data"];
    assert_eq!(rtf_only["attachments"], json!([]), "{rtf_only}");
    assert!(rtf_only["source"]["url"].is_string(), "the mail's source keeps the winmail.dat");
    let with_text = &received.iter().find(|e| e["data"]["subject"] == "With text").unwrap()["data"];
    assert_eq!(with_text["text"].as_str().map(str::trim), Some("Anbei."));
    assert!(!with_text["html"].as_str().unwrap_or_default().contains("schemas-microsoft-com"), "{with_text}");
    assert_eq!(with_text["attachments"].as_array().map(Vec::len), Some(3), "{with_text}");
    server.stop().await;
}

/// An RTF body is read in each font's character set: a Western Outlook (`\ansicpg1252`) writes
/// Polish in a Central European font (`\fcharset238`) and Russian in a Cyrillic one. Checked
/// against RTFDE reading the RTF that Debian's `tnef` takes out of the same winmail.dat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtf_body_is_read_in_the_character_set_of_each_font() {
    let rtf = br"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss\fcharset0 Arial;}{\f1\fswiss\fcharset238 Arial CE;}{\f2\fnil\fcharset204 Arial Cyr;}}
{\*\htmltag19 <html>}{\*\htmltag50 <body>}{\*\htmltag64 <p>}\htmlrtf {\f1\htmlrtf0 Za\'bf\'f3\'b3\'e6 g\'ea\'9cl\'b9 ja\'9f\'f1\htmlrtf }\htmlrtf0 {\*\htmltag72 </p>}
{\*\htmltag64 <p>}Caf\'e9 {\f2 \'cf\'f0\'e8\'e2\'e5\'f2}{\*\htmltag72 </p>}{\*\htmltag58 </body>}{\*\htmltag27 </html>}}";
    // The header's CRC as Outlook computes it (its RTF sample's compressed body and CRC).
    let (_, outlook) = tnef_sample("rtf");
    let lzfu = outlook.windows(4).position(|w| w == b"LZFu").expect("compressed RTF in Outlook's sample");
    let field = |at: usize| u32::from_le_bytes(outlook[at..at + 4].try_into().unwrap());
    let data = &outlook[lzfu + 8..lzfu - 4 + field(lzfu - 8) as usize];
    assert_eq!(rtf_crc(data), field(lzfu + 4));
    let stream = tnef_with_rtf(rtf);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("winmail.dat"), &stream).unwrap();
    let status = std::process::Command::new("tnef")
        .args(["--save-body=body", "--body-pref=r", "-f", "winmail.dat"])
        .current_dir(dir.path())
        .status()
        .expect("Debian's tnef (tests/run.sh installs it)");
    assert!(status.success());
    let taken_out = dir.path().join("body.rtf");
    let bytes = std::fs::read(&taken_out).unwrap();
    assert_eq!(bytes.strip_suffix(b"\0").unwrap_or(&bytes), rtf, "Debian's tnef reads the winmail.dat");
    let read: Value = serde_json::from_str(&python("rtf_body.py", &[], &json!([taken_out]))).unwrap();
    assert_eq!(read[0]["kind"], "html");
    let reference = read[0]["content"].as_str().unwrap();
    assert!(reference.contains("Zażółć gęślą jaźń") && reference.contains("Café Привет"), "{reference}");

    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let text = format!(
        "From: Ann <{}>\nTo: {}\nSubject: Fonts\nMessage-ID: <fonts@example.org>\nMIME-Version: 1.0\n\
         Content-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n{}\n",
        ANN.0,
        SUPPORT.0,
        base64_lines(&stream)
    );
    mail.append(SUPPORT, &text).await;
    let message = nth_received(&helpdesk, 0).await;
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(message["html"].as_str().unwrap()), words(reference), "{message}");
    server.stop().await;
}

/// `switchboard check --connect`: a sysadmin tries the mail logins before starting the
/// service. With the right settings every check is ok — folders opened read-only (EXAMINE),
/// SMTP logged in and ended with QUIT, nothing sent or changed. A wrong SMTP password and a
/// misspelt folder are each named on their own line, and the exit status is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_tries_every_login_and_folder_and_names_what_fails() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Sent", "Archive"]).await;
    mail.append(SUPPORT, &mail_text(ANN.0, "Waiting", "waiting@example.org", "", "Still here")).await;
    let imap = "sent_folder = \"Sent\"\nafter_import = \"move:Archive\"";
    let (code, out) = check_connect(&mail.channel_with_imap("support", imap));
    assert_eq!(code, 0, "{out}");
    for line in [
        format!("support: imap 127.0.0.1:{}: ok, logged in as support@example.com", mail.imap_port),
        "support: imap folder \"INBOX\": ok, 1 mail(s)".to_owned(),
        "support: imap sent_folder \"Sent\": ok, 0 mail(s)".to_owned(),
        "support: imap after_import \"Archive\": ok, 0 mail(s)".to_owned(),
        format!("support: smtp 127.0.0.1:{}: ok, logged in as support@example.com; no DSN", mail.smtp_port),
    ] {
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
    let session = mail.client_sessions().concat();
    assert!(session.contains(" EXAMINE \"INBOX\"") && !session.contains(" SELECT "), "{session}");
    assert!(session.contains(" LOGOUT"), "{session}");
    assert!(mail.smtp_log().contains("AUTH PLAIN ok support@example.com"), "{}", mail.smtp_log());
    assert_eq!(mail.inbox(SUPPORT).await[0].1.iter().filter(|f| f.contains("Seen")).count(), 0, "nothing marked read");

    let broken = mail
        .channel_with_imap("support", "folders = [\"INBOX\", \"Suport\"]")
        .replacen(&format!("password = \"{}\"\n", SUPPORT.1), "password = \"wrong\"\n", 2)
        .replacen("password = \"wrong\"\n", &format!("password = \"{}\"\n", SUPPORT.1), 1);
    let (code, out) = check_connect(&broken);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("support: imap folder \"Suport\": FAILED, cannot be opened"), "{out}");
    assert!(out.contains("support: imap folder \"INBOX\": ok"), "{out}");
    let smtp_line = out.lines().find(|l| l.starts_with("support: smtp ")).unwrap_or_default();
    assert!(smtp_line.contains(": FAILED, ") && smtp_line.contains("535"), "{out}");
}

/// AUTH LOGIN, for servers that offer no PLAIN (older Exchange and appliances do so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_login_when_the_server_offers_nothing_else() {
    let mail = MailServers::start_with_smtp_auth("LOGIN").await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (_, queued) =
        server.post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Login", "text": "hi"})).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    assert_eq!(mail.inbox(ANN).await.len(), 1);
    let log = mail.smtp_log();
    assert!(log.contains(&format!("AUTH LOGIN ok {}", SUPPORT.0)) && !log.contains("AUTH PLAIN"), "{log}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_refusals_fail_the_message_permanently() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (_, queued) = server
        .post("/v1/messages", json!({"channel": "support", "to": "nobody@example.org", "subject": "Hi", "text": "x"}))
        .await;
    let failed = server.wait_status(queued["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["permanent"], true, "{failed}");
    assert!(failed["error"]["code"].as_str().unwrap().starts_with("smtp_5"), "{failed}");
    server.stop().await;
}

pub(crate) async fn count(server: &TestServer) -> usize {
    received(server).await.len()
}

/// The messages the gateway announced as received, in order.
pub(crate) async fn received(server: &TestServer) -> Vec<Value> {
    let events = server.all_events().await.into_iter();
    events.filter(|e| e["type"] == "message.received").map(|e| e["data"].clone()).collect()
}

pub(crate) fn mail_text(from: &str, subject: &str, message_id: &str, headers: &str, body: &str) -> String {
    mail(from, SUPPORT.0, subject, message_id, headers, body)
}

/// An RFC 3339 UTC time (`2026-11-28T03:10:00.000Z`) as IMAP's APPEND date-time
/// (`28-Nov-2026 03:10:00 +0000`).
fn imap_date_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month: usize = rfc3339[5..7].parse().unwrap();
    format!("{}-{}-{} {} +0000", &rfc3339[8..10], MONTHS[month - 1], &rfc3339[0..4], &rfc3339[11..19])
}

/// Outlook's winmail.dat sample `name`: its path and bytes (tnefparse's test data, downloaded
/// by tests/run.sh into `SB_TNEF_SAMPLES`).
fn tnef_sample(name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let samples = std::env::var("SB_TNEF_SAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| panic!("SB_TNEF_SAMPLES is not set: tests/run.sh downloads the TNEF samples"));
    let path = samples.join(format!("{name}.tnef"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{name}.tnef in {}: {e} (tests/run.sh downloads it)", samples.display()));
    (path, bytes)
}

/// `bytes` base64-encoded in 76-character lines: a MIME part's body.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
}

/// `rtf` as MS-OXRTFCP compressed RTF ("LZFu"), written as literals only: each control byte
/// announces eight literal bytes, and a reference to the dictionary's own write position ends
/// the data.
fn compressed_rtf(rtf: &[u8]) -> Vec<u8> {
    const PREBUFFER_LEN: usize = 207;
    let mut data = Vec::new();
    let mut chunks = rtf.chunks(8).peekable();
    let mut written = PREBUFFER_LEN;
    loop {
        let chunk = chunks.next().unwrap_or_default();
        written += chunk.len();
        if chunk.len() == 8 {
            data.push(0);
            data.extend(chunk);
            continue;
        }
        // The last chunk: its literals, then the end (a reference at bit `chunk.len()`).
        data.push(1 << chunk.len());
        data.extend(chunk);
        data.extend((((written % 4096) as u16) << 4).to_be_bytes());
        break;
    }
    let crc = rtf_crc(&data);
    let mut compressed = Vec::new();
    compressed.extend((data.len() as u32 + 12).to_le_bytes()); // the size after this field
    compressed.extend((rtf.len() as u32).to_le_bytes());
    compressed.extend(b"LZFu");
    compressed.extend(crc.to_le_bytes());
    compressed.extend(data);
    compressed
}

/// The CRC-32 of compressed RTF data (MS-OXRTFCP 2.1.3.2: reflected 0xEDB88320, initial 0, no
/// final xor; neither our reader nor Debian's checks it, so the test checks it against Outlook's).
fn rtf_crc(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |crc, byte| {
        (0..8).fold(crc ^ u32::from(*byte), |c, _| if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
    })
}

/// A winmail.dat (MS-OXTNEF) whose only content is `rtf` as the message's `PR_RTF_COMPRESSED`,
/// as Outlook sends a "Rich Text" mail through Exchange.
fn tnef_with_rtf(rtf: &[u8]) -> Vec<u8> {
    let compressed = compressed_rtf(rtf);
    // attMAPIProps: one PT_BINARY property (type 0x0102, id 0x1009), one value, padded to 4.
    let mut props = Vec::new();
    props.extend(1u32.to_le_bytes());
    props.extend(0x0102u16.to_le_bytes());
    props.extend(0x1009u16.to_le_bytes());
    props.extend(1u32.to_le_bytes());
    props.extend((compressed.len() as u32).to_le_bytes());
    props.extend(&compressed);
    props.resize(props.len().next_multiple_of(4), 0);
    let mut stream = Vec::new();
    stream.extend(0x223E_9F78u32.to_le_bytes());
    stream.extend(0x0001u16.to_le_bytes()); // legacy key
    let mut attribute = |level: u8, id: u32, data: &[u8]| {
        stream.push(level);
        stream.extend(id.to_le_bytes());
        stream.extend((data.len() as u32).to_le_bytes());
        stream.extend(data);
        let checksum = data.iter().fold(0u16, |sum, b| sum.wrapping_add(u16::from(*b)));
        stream.extend(checksum.to_le_bytes());
    };
    attribute(1, 0x0008_9006, &0x0001_0000u32.to_le_bytes()); // attTnefVersion
    attribute(1, 0x0006_9003, &props);
    stream
}

/// Calendar invitations as Google Calendar and Outlook send them, and an attendee's answer, come
/// through Dovecot into `message.calendar`, as the fixture corpus expects: the event, its times
/// in UTC, the organizer, who answered what. The stored message says the same, the events keep to
/// the published schema, and Google's invitation, sent as both the body's `text/calendar` part
/// and `invite.ics`, lists its file once. A cancellation of one meeting of a series says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_invitations_and_answers_reach_the_helpdesk_as_events() {
    let names = [
        "google-calendar-invite-en",
        "outlook-meeting-accepted-de",
        "outlook-meeting-invite-pl",
        "google-calendar-occurrence-canceled-en",
    ];
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    for name in names {
        append_fixture(&mail, name).await;
    }
    for n in 0..names.len() {
        nth_received(&helpdesk, n).await;
    }
    let received = helpdesk.events_of("message.received");
    for name in names {
        let path = format!("{}/tests/fixtures/email/{name}.expected.json", env!("CARGO_MANIFEST_DIR"));
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let message = received
            .iter()
            .map(|e| &e["data"])
            .find(|m| m["subject"] == expected["subject"])
            .unwrap_or_else(|| panic!("{name} not received"));
        assert_eq!(message["calendar"], expected["calendar"], "{name}");
        let files: Vec<&str> =
            message["attachments"].as_array().unwrap().iter().map(|a| a["filename"].as_str().unwrap()).collect();
        assert_eq!(files, ["invite.ics"], "{name}");
        let (status, stored) = server.get(&format!("/v1/messages/{}", message["id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
        assert_eq!(stored["calendar"], expected["calendar"], "{name}, as stored");
    }
    let answer = received.iter().find(|e| e["data"]["calendar"]["method"] == "REPLY").unwrap();
    assert_eq!(answer["data"]["calendar"]["attendees"][0]["status"], "accepted");
    server.validate_contract(received.into_iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// An invitation, its update and its cancellation are one conversation, though each subject
/// says something else ("Invitation: …", "Updated invitation: …", "Canceled event: …") and none
/// names the one before: the event's UID threads them (`stitch.reason` `calendar`). A stranger's
/// invitation that reuses the UID starts a conversation of its own, and a plain event file (no
/// iTIP method: a booking confirmation, say) threads by nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_its_update_and_its_cancellation_stay_one_conversation() {
    let mail = MailServers::start().await;
    let helpdesk = Receiver::start().await;
    let config = format!("{}{}", mail.channel("support", ""), webhook("h", &helpdesk, "[\"1s\"]"));
    let server = TestServer::start(&config).await;
    let invitation = |n: usize, from: &str, subject: &str, method: Option<&str>, sequence: u32| {
        let event = format!(
            "UID:call-4711@example.org\r\nSEQUENCE:{sequence}\r\nSUMMARY:Call about order 4711\r\n\
             DTSTART:20261204T100000Z\r\nORGANIZER:mailto:{from}\r\n"
        );
        calendar_mail(from, SUPPORT.0, subject, &format!("invitation-{n}@example.org"), method, &event)
    };
    let steps = [
        (ANN.0, "Invitation: Call about order 4711 @ Thu Dec 3, 2026 10am", Some("REQUEST"), 0, "new"),
        (ANN.0, "Updated invitation: Call about order 4711 @ Fri Dec 4, 2026 10am", Some("REQUEST"), 1, "calendar"),
        (ANN.0, "Canceled event: Call about order 4711 @ Fri Dec 4, 2026 10am", Some("CANCEL"), 2, "calendar"),
        ("stranger@example.net", "Invitation: Call about order 4711", Some("REQUEST"), 0, "new"),
        (ANN.0, "Your booking", None, 0, "new"),
    ];
    let mut received = Vec::new();
    for (n, (from, subject, method, sequence, reason)) in steps.into_iter().enumerate() {
        mail.append(SUPPORT, &invitation(n, from, subject, method, sequence)).await;
        let message = nth_received(&helpdesk, n).await;
        assert_eq!(message["stitch"]["reason"], reason, "{subject}: {message}");
        received.push(message);
    }
    let conversation = |n: usize| received[n]["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!((conversation(1), conversation(2)), (conversation(0), conversation(0)));
    assert_eq!(received[2]["calendar"]["method"], "CANCEL");
    assert_ne!(conversation(3), conversation(0), "the stranger's");
    assert_ne!(conversation(4), conversation(0), "the booking's");
    // A restart keeps what threads them: a later answer still finds the conversation.
    let server = TestServer::start_in(server.stop().await, &config).await;
    mail.append(SUPPORT, &invitation(5, ANN.0, "Invitation: Call about order 4711 @ Mon Dec 7", Some("REQUEST"), 3))
        .await;
    let again = nth_received(&helpdesk, 5).await;
    assert_eq!(
        (again["conversation_id"].as_str().unwrap(), again["stitch"]["reason"].as_str()),
        (conversation(0).as_str(), Some("calendar"))
    );
    server.stop().await;
}

/// An agent invites a customer to a call from the mail client (the Sent folder is watched): the
/// customer's calendar answers "Accepted: …" with no In-Reply-To and a subject the thread never
/// had, and the answer still lands in the agent's conversation, by the event's UID, with who
/// accepted in its `calendar`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_to_an_invitation_an_agent_sent_from_the_mail_client_joins_its_conversation() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Sent"]).await;
    let config = mail.channel_with_imap("support", "folders = [\"INBOX\", \"Sent\"]");
    let server = TestServer::start(&config).await;
    let event = |answer: &str| {
        format!(
            "UID:040000008200E00074C5B7101A82E008-lamp\r\nSUMMARY:Broken lamp\r\nDTSTART:20261204T100000Z\r\n\
             ORGANIZER;CN=Example Support:mailto:{}\r\nATTENDEE;PARTSTAT={answer};CN=Ann:mailto:{}\r\n",
            SUPPORT.0, ANN.0
        )
    };
    let from_us = format!("Example Support <{}>", SUPPORT.0);
    let invitation = calendar_mail(
        &from_us,
        ANN.0,
        "Broken lamp",
        "invite-lamp@example.com",
        Some("REQUEST"),
        &event("NEEDS-ACTION"),
    );
    let mut session = mail.login(SUPPORT).await;
    session.append("Sent", None, None, invitation).await.unwrap();
    session.logout().await.unwrap();
    let sent = loop_until(|| async {
        server.all_events().await.into_iter().find(|e| e["type"] == "message.sent").map(|e| e["data"].clone())
    })
    .await;
    assert_eq!(sent["calendar"]["method"], "REQUEST");
    let answer = calendar_mail(
        ANN.0,
        SUPPORT.0,
        "Accepted: Broken lamp",
        "accepted-lamp@example.org",
        Some("REPLY"),
        &event("ACCEPTED"),
    );
    mail.append(SUPPORT, &answer).await;
    let received = first_received(&server).await["data"].clone();
    assert_eq!(
        (received["conversation_id"].as_str(), received["stitch"]["reason"].as_str()),
        (sent["conversation_id"].as_str(), Some("calendar")),
        "{received}"
    );
    assert_eq!(received["calendar"]["attendees"][0]["status"], "accepted");
    server.stop().await;
}

/// A mail as a calendar sends an invitation or an answer: the subject as its text, and a
/// `text/calendar` part holding one event (`event`: its content lines), with `METHOD` (and the
/// part's `method=`) when given.
fn calendar_mail(from: &str, to: &str, subject: &str, message_id: &str, method: Option<&str>, event: &str) -> String {
    let (method_line, method_parameter) = match method {
        Some(m) => (format!("METHOD:{m}\r\n"), format!("; method={m}")),
        None => (String::new(), String::new()),
    };
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {subject}\r\n--A\r\nContent-Type: text/calendar; charset=utf-8{method_parameter}\r\n\r\n\
         BEGIN:VCALENDAR\r\n{method_line}BEGIN:VEVENT\r\n{event}END:VEVENT\r\nEND:VCALENDAR\r\n--A--\r\n"
    )
}

/// Appends `tests/fixtures/email/{name}.eml` to the support mailbox.
async fn append_fixture(mail: &MailServers, name: &str) {
    let path = format!("{}/tests/fixtures/email/{name}.eml", env!("CARGO_MANIFEST_DIR"));
    mail.append(SUPPORT, &std::fs::read_to_string(path).unwrap()).await;
}

/// Polls `f` until it yields a value (30 s at most: on two busy cores a first login can meet
/// Dovecot's auth still starting, and the reconnect backoff then takes seconds).
pub(crate) async fn loop_until<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_fail_their_message_and_auto_replies_never_open_conversations() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let received = |n: usize| {
        let server = &server;
        async move {
            loop_until(|| async {
                let r: Vec<Value> =
                    server.all_events().await.into_iter().filter(|e| e["type"] == "message.received").collect();
                (r.len() >= n).then_some(r)
            })
            .await
        }
    };
    // Two messages out to Ann: one will bounce for good, one is delayed.
    let (_, failed) =
        server.post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "One", "text": "1"})).await;
    let (_, delayed) =
        server.post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Two", "text": "2"})).await;
    let failed_id = failed["id"].as_str().unwrap();
    let delayed_id = delayed["id"].as_str().unwrap();
    let header = |m: Value| m["provider"]["message_id"].as_str().unwrap().to_owned();
    let failed_header = header(server.wait_status(failed_id, "sent").await);
    let delayed_header = header(server.wait_status(delayed_id, "sent").await);

    let dsn = |action: &str, status: &str, original: &str| {
        format!(
            "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\nTo: {}\nSubject: Undelivered Mail Returned to Sender\nAuto-Submitted: auto-replied\nMessage-ID: <dsn-{status}@mx.example.org>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nSorry.\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; ann@example.org\nAction: {action}\nStatus: {status}\nDiagnostic-Code: smtp; 550 {status} mailbox unavailable\n\n--B\nContent-Type: text/rfc822-headers\n\nFrom: support@example.com\nTo: ann@example.org\nMessage-ID: <{original}>\n\n--B--\n",
            SUPPORT.0
        )
    };
    mail.append(SUPPORT, &dsn("failed", "5.2.1", &failed_header)).await;
    mail.append(SUPPORT, &dsn("delayed", "4.4.1", &delayed_header)).await;
    let events = received(2).await;

    let bounced = server.wait_status(failed_id, "failed").await;
    assert_eq!(bounced["error"]["code"], "bounce_5.2.1");
    assert_eq!(bounced["error"]["permanent"], true);
    let (_, still_sent) = server.get(&format!("/v1/messages/{delayed_id}")).await;
    assert_eq!(still_sent["status"], "sent", "a delay is recorded, not a failure");
    for (event, ours) in events.iter().zip([&failed, &delayed]) {
        let data = &event["data"];
        assert_eq!(data["auto_reply"], true);
        assert_eq!(data["stitch"]["reason"], "bounce");
        assert_eq!(
            data["conversation_id"], ours["conversation_id"],
            "the bounce joins the bounced message's conversation"
        );
        assert_eq!(data["in_reply_to"], ours["id"]);
    }
    assert_eq!(events[1]["data"]["delivery_report"]["action"], "delayed");

    // A vacation reply to our thread joins it, flagged; one from a stranger opens nothing.
    mail.append(
        SUPPORT,
        &mail_text(
            "ann@example.org",
            "Automatic reply: Two",
            "vac@example.org",
            &format!("Auto-Submitted: auto-replied\nIn-Reply-To: <{delayed_header}>\n"),
            "Out of office",
        ),
    )
    .await;
    let events = received(3).await;
    assert_eq!(events[2]["data"]["auto_reply"], true);
    assert_eq!(events[2]["data"]["conversation_id"], delayed["conversation_id"]);
    let conversations_before = server.all_events().await.iter().filter(|e| e["type"] == "conversation.created").count();
    mail.append(
        SUPPORT,
        &mail_text("robot@example.net", "Out of office", "vac2@example.net", "Auto-Submitted: auto-replied\n", "Away"),
    )
    .await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Marker", "marker@example.org", "", "a normal mail after it"))
        .await;
    let events = received(4).await;
    assert_eq!(events[3]["data"]["subject"], "Marker", "the stranger's auto-reply was rejected, not stored");
    let all = server.all_events().await;
    let conversations_after = all.iter().filter(|e| e["type"] == "conversation.created").count();
    assert_eq!(conversations_after, conversations_before + 1, "only the normal mail opened a conversation");
    // The operator finds it, and why it was refused.
    let (status, listed) = server.get("/v1/channels/support/rejected").await;
    assert_eq!(status, 200, "{listed}");
    let rejected = &listed["rejected"];
    assert_eq!(rejected.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(rejected[0]["reason"], "an automatic reply outside any conversation");
    assert_eq!(rejected[0]["from"]["address"], "robot@example.net");
    assert_eq!(
        (rejected[0]["subject"].as_str(), rejected[0]["provider_message_id"].as_str()),
        (Some("Out of office"), Some("vac2@example.net"))
    );
    assert_eq!(listed["next_after"], Value::Null);
    // The refused mail itself, byte for byte as the server holds it.
    let source = &rejected[0]["source"];
    assert_eq!(
        (source["filename"].as_str(), source["content_type"].as_str()),
        (Some("message.eml"), Some("message/rfc822"))
    );
    let response = server.http.get(source["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let inbox = mail.inbox(SUPPORT).await;
    let held = inbox.into_iter().find(|m| String::from_utf8_lossy(&m.2).contains("<vac2@example.net>")).unwrap();
    assert_eq!(response.bytes().await.unwrap().to_vec(), held.2);
    let page = "/v1/channels/support/rejected";
    server
        .validate_contract(vec![
            json!({"path": page.replace("support", "{id}"), "method": "get", "status": "200", "instance": listed}),
        ])
        .await;
    let (status, _) = server.get(&format!("/v1/channels/support/rejected?after={}", rejected[0]["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/v1/channels/nope/rejected").await.0, 404);

    // Mail events (bounces, reports, auto-replies) match the published schemas.
    server.validate_contract(all.into_iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// A real MTA's bounce. Postfix (which offers DSN) takes our mail for a mailbox Dovecot does not
/// have and returns its delivery status notification to our address; the message fails from it.
/// A mail refused by a rule (it looked automatic; a bounce about no mail of ours) is taken in by
/// an operator from its kept source: it becomes a message with its events, once — a second
/// accept, a restart, the same mail fetched again all find that message. A mail no rule lets in
/// (ours, to no one outside) stays refused, and is not recorded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_takes_in_a_refused_mail_once_and_it_stays_taken_in() {
    let mail = MailServers::start().await;
    // A channel id of its own: the inbound counters in /metrics are process-wide.
    let config = mail.channel("intake", "");
    let server = TestServer::start(&config).await;
    let listing = "/v1/channels/intake/rejected";
    let refused_count = |n: usize| {
        let server = &server;
        async move {
            loop_until(|| async {
                let (_, listed) = server.get(listing).await;
                (listed["rejected"].as_array().map(Vec::len) == Some(n)).then_some(listed)
            })
            .await
        }
    };
    // A customer's mail that a shop's contact relay marked automatic; a bounce about a mail the
    // gateway never sent; a mail from our own address to ourselves.
    let customer =
        mail_text("cleo@example.net", "Broken lid", "lid@example.net", "Auto-Submitted: auto-generated\n", "Cracked.");
    // The mailbox got it yesterday morning: taken in today, it keeps that time.
    let yesterday = switchboard::model::time::rfc3339((switchboard::model::time::now_ms() - 86_400_000) / 1000 * 1000);
    mail.append_received(SUPPORT, &customer, Some(&imap_date_time(&yesterday))).await;
    let bounce = "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: support@example.com\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn-x@mx.example.org>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nSorry.\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; old@example.org\nAction: failed\nStatus: 5.1.1\n\n--B\nContent-Type: text/rfc822-headers\n\nFrom: support@example.com\nTo: old@example.org\nMessage-ID: <written-in-thunderbird@example.com>\n\n--B--\n";
    mail.append(SUPPORT, bounce).await;
    mail.append(SUPPORT, &crate::mail_servers::mail(SUPPORT.0, SUPPORT.0, "Test", "self@example.com", "", "test"))
        .await;
    let listed = refused_count(3).await;
    let items = listed["rejected"].as_array().unwrap().clone();
    let reasons: Vec<&str> = items.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        [
            "an automatic reply outside any conversation",
            "a bounce about a message this gateway did not send",
            "a mail from our own address to no one outside"
        ]
    );
    assert_eq!((&items[0]["accepted_message_id"], &items[0]["accepted_at"]), (&Value::Null, &Value::Null));
    assert_eq!(items[0]["received_at"], yesterday);
    assert_eq!(count(&server).await, 0);
    let accept = |id: &Value| format!("{listing}/{id}/accept");

    // The customer's mail: a message in a new conversation, announced like any.
    let (status, taken) = server.post(&accept(&items[0]["id"]), json!({})).await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["duplicate"], false);
    let (_, message) = server.get(&format!("/v1/messages/{}", taken["message_id"].as_str().unwrap())).await;
    assert_eq!(
        (message["subject"].as_str(), message["text"].as_str().map(str::trim_end)),
        (Some("Broken lid"), Some("Cracked."))
    );
    assert_eq!(message["from"]["address"], "cleo@example.net");
    assert_eq!(message["auto_reply"], true, "still what it is: only the refusal was overridden");
    assert_eq!(message["received_at"], yesterday, "when the mailbox got it");
    assert_eq!(message["conversation_id"], taken["conversation_id"]);
    let all = server.all_events().await;
    let received: Vec<&Value> = all.iter().filter(|e| e["type"] == "message.received").collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["data"]["id"], taken["message_id"]);
    assert!(all.iter().any(|e| e["type"] == "conversation.created" && e["data"]["id"] == taken["conversation_id"]));
    // Taken in once: again, it is the same message.
    let (status, again) = server.post(&accept(&items[0]["id"]), json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((&again["message_id"], &again["duplicate"]), (&taken["message_id"], &json!(true)));

    // The bounce: a mail from the system that wrote it, in a conversation of its own.
    let (status, bounce_taken) = server.post(&accept(&items[1]["id"]), json!({})).await;
    assert_eq!(status, 200, "{bounce_taken}");
    let (_, bounce_message) =
        server.get(&format!("/v1/messages/{}", bounce_taken["message_id"].as_str().unwrap())).await;
    assert_eq!(bounce_message["from"]["address"], "MAILER-DAEMON@mx.example.org");
    assert_eq!(bounce_message["stitch"]["reason"], "new");
    assert_ne!(bounce_taken["conversation_id"], taken["conversation_id"]);

    // Our own mail to ourselves has no one to be a conversation with: still refused, said why,
    // and listed once.
    let (status, error) = server.post(&accept(&items[2]["id"]), json!({})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "cannot_accept");
    assert!(error["error"]["message"].as_str().unwrap().contains("to no one outside"), "{error}");
    // Nothing by that id, on that channel or any other.
    let (status, error) = server.post(&format!("{listing}/999/accept"), json!({})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("unknown_rejected")));
    assert_eq!(server.post("/v1/channels/nope/rejected/1/accept", json!({})).await.0, 404);

    let (_, listed) = server.get(listing).await;
    let items = listed["rejected"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    assert_eq!(items[0]["accepted_message_id"], taken["message_id"]);
    assert_eq!(items[1]["accepted_message_id"], bounce_taken["message_id"]);
    assert!(items[0]["accepted_at"].is_string() && items[2]["accepted_message_id"].is_null(), "{listed}");
    let instances = vec![
        json!({"path": "/v1/channels/{id}/rejected", "method": "get", "status": "200", "instance": listed}),
        json!({"path": "/v1/channels/{id}/rejected/{rejected_id}/accept", "method": "post", "status": "200", "instance": taken}),
        json!({"path": "/v1/channels/{id}/rejected/{rejected_id}/accept", "method": "post", "status": "409", "instance": error}),
    ];
    server.validate_contract(instances).await;
    // Three refusals, two messages stored by taking them in; the attempt that failed is no
    // fourth refusal.
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let counted = |outcome: &str| {
        let line = format!("switchboard_inbound_total{{channel=\"intake\",outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).map(str::to_owned)
    };
    assert_eq!((counted("rejected"), counted("stored")), (Some("3".into()), Some("2".into())), "{metrics}");

    // After a restart the same mail arriving again (a copy in the mailbox) is that message, and
    // the accept still finds it.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    mail.append(SUPPORT, &customer).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Marker", "marker@example.org", "", "after it")).await;
    loop_until(|| async {
        let all = server.all_events().await;
        all.iter().any(|e| e["type"] == "message.received" && e["data"]["subject"] == "Marker").then_some(())
    })
    .await;
    let subjects = received_subjects(&server).await;
    assert_eq!(subjects.iter().filter(|s| *s == "Broken lid").count(), 1, "{subjects:?}");
    let (status, again) = server.post(&accept(&items[0]["id"]), json!({})).await;
    assert_eq!((status, &again["message_id"], &again["duplicate"]), (200, &taken["message_id"], &json!(true)));
    server.stop().await;
}

/// `limits.inbound_per_sender_per_hour`: a sender flooding the support address (here six mails
/// arriving now, the limit two) gets two messages in; the rest are refused with the reason,
/// listed, and can be taken in. What counts is when the mailbox got a mail (INTERNALDATE), not
/// the Date its sender wrote: a flood with old Dates is held all the same, mail the mailbox got
/// before the hour (a backlog fetched late) neither counts nor is counted, and other senders are
/// not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_sender_is_held_to_the_hourly_limit_and_a_backlog_is_not() {
    let mail = MailServers::start().await;
    let limits = "[channels.limits]\ninbound_per_sender_per_hour = 2\n";
    let (helpdesk, server) = {
        let helpdesk = Receiver::start().await;
        let config = format!("{}{}", mail.channel("support", limits), webhook("h", &helpdesk, "[\"1s\"]"));
        (helpdesk, TestServer::start(&config).await)
    };
    // Arriving now: no Date, as a script would send it, or (odd ones) a Date years old.
    let fresh = |from: &str, n: usize| {
        let date = if n % 2 == 1 { "Date: Wed, 01 Jan 2020 10:00:00 +0000\n" } else { "" };
        mail_text(from, &format!("Alert {n}"), &format!("alert-{n}@{from}"), "", "disk full")
            .replace("Date: Mon, 23 Nov 2026 10:00:00 +0000\n", date)
    };
    // Ann's backlog: four mails the mailbox got two days ago (and written today), then one now.
    let two_days_ago =
        switchboard::model::time::rfc3339((switchboard::model::time::now_ms() - 2 * 86_400_000) / 1000 * 1000);
    for n in 0..4 {
        let old = mail_text(ANN.0, &format!("Old {n}"), &format!("old-{n}@example.org"), "", "hi")
            .replace("Date: Mon, 23 Nov 2026 10:00:00 +0000\n", "");
        mail.append_received(SUPPORT, &old, Some(&imap_date_time(&two_days_ago))).await;
    }
    for n in 0..6 {
        mail.append(SUPPORT, &fresh("monitor@example.net", n)).await;
    }
    mail.append(SUPPORT, &fresh(ANN.0, 9)).await;
    mail.append(SUPPORT, &fresh("bea@example.org", 10)).await;
    // Twelve mails: eight messages and four refusals, in whichever order the webhook tells them.
    nth_received(&helpdesk, 7).await;
    let listed = loop_until(|| async {
        let (_, listed) = server.get("/v1/channels/support/rejected").await;
        (listed["rejected"].as_array().map(Vec::len) == Some(4)).then_some(listed)
    })
    .await;
    let mut subjects: Vec<String> = helpdesk
        .events_of("message.received")
        .iter()
        .map(|e| e["data"]["subject"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["Alert 0", "Alert 1", "Alert 10", "Alert 9", "Old 0", "Old 1", "Old 2", "Old 3"]);
    // A message's `received_at` is when the mailbox got it.
    let old = helpdesk.events_of("message.received").into_iter().find(|e| e["data"]["subject"] == "Old 0").unwrap();
    assert_eq!(old["data"]["received_at"], two_days_ago, "{old}");
    let refused = listed["rejected"].as_array().unwrap();
    for item in refused {
        assert_eq!(item["from"]["address"], "monitor@example.net");
        assert_eq!(
            item["reason"],
            "more than 2 messages from this sender within an hour (limits.inbound_per_sender_per_hour)"
        );
    }
    // What was held back is not lost: an operator takes one in.
    let (status, taken) =
        server.post(&format!("/v1/channels/support/rejected/{}/accept", refused[0]["id"]), json!({})).await;
    assert_eq!((status, &taken["duplicate"]), (200, &json!(false)), "{taken}");
    assert_eq!(nth_received(&helpdesk, 8).await["subject"], "Alert 2");
    server.stop().await;
}

/// The notification names our message by the envelope id we gave (ENVID); a notification that
/// names it only that way, without the original's headers, is matched all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postfix_bounce_names_and_fails_the_message_by_its_envelope_id() {
    let (mail, postfix, server) = through_postfix().await;
    let (status, lost) = server
        .post("/v1/messages", json!({"channel": "support", "to": "nobody@example.org", "subject": "Lost", "text": "1"}))
        .await;
    assert_eq!(status, 202, "{lost}");
    let lost_id = lost["id"].as_str().unwrap();
    let failed = server.wait_status(lost_id, "failed").await;
    assert_eq!(failed["error"]["code"], "bounce_5.1.1", "{failed}");
    assert_eq!(failed["error"]["permanent"], true);
    let bounce = first_received(&server).await;
    let data = &bounce["data"];
    assert_eq!(data["stitch"]["reason"], "bounce");
    assert_eq!(data["auto_reply"], true);
    assert_eq!(data["conversation_id"], lost["conversation_id"]);
    assert_eq!(data["delivery_report"]["original_envelope_id"], lost_id, "Postfix returned our ENVID: {data}");
    assert_eq!(data["delivery_report"]["recipient"], "nobody@example.org");
    let log = postfix.log();
    assert!(log.contains("to=<nobody@example.org>") && log.contains("dsn=5.1.1"), "{log}");
    // Sisimai reads Postfix's own DSN as we do.
    let theirs = sisimai_on_first_mail(&mail).await;
    assert_eq!((&theirs[0]["recipient"], &theirs[0]["smtpagent"]), (&json!("nobody@example.org"), &json!("Postfix")));
    assert_eq!(theirs[0]["deliverystatus"], data["delivery_report"]["status"]);

    // Delivered through Postfix; then a notification that names it by envelope id alone.
    let (_, delivered) =
        server.post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Fine", "text": "2"})).await;
    let delivered_id = delivered["id"].as_str().unwrap();
    server.wait_status(delivered_id, "sent").await;
    loop_until(|| async { (!mail.inbox(ANN).await.is_empty()).then_some(()) }).await;
    let report = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@relay.example.net\nTo: {}\nSubject: Delivery Status Notification (Failure)\nMessage-ID: <dsn-envid@relay.example.net>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nThe mailbox is full.\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.net\nOriginal-Envelope-Id: {delivered_id}\n\nFinal-Recipient: rfc822; {}\nAction: failed\nStatus: 5.2.2\n\n--B--\n",
        SUPPORT.0, ANN.0
    );
    mail.append(SUPPORT, &report).await;
    let failed = server.wait_status(delivered_id, "failed").await;
    assert_eq!(failed["error"]["code"], "bounce_5.2.2", "{failed}");
    // Both mails went through one pooled SMTP session (the other connection is the harness
    // checking that Postfix listens).
    let log = postfix.log();
    assert_eq!(log.matches(" connect from ").count(), 2, "{log}");
    assert_eq!(log.matches("lost connection after CONNECT").count(), 1, "{log}");
    server.stop().await;
}

/// The recipient's own mail server refuses a mail it had accepted: Dovecot runs Ann's Sieve
/// script, which rejects it (RFC 5429), and sends the sender its rejection notice — not a DSN
/// but a message disposition notification (RFC 8098) with the disposition `deleted`, as
/// Dovecot's delivery agent also sends over quota. It names and fails the message it refuses,
/// with Ann's reason; Sisimai reads Dovecot's notice as a bounce for Ann too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sieve_rejection_by_the_recipients_server_fails_the_message() {
    let script = "require \"reject\";\nreject \"I do not take mail from shops. Ann\";\n";
    let mail = MailServers::start_with_sieve(ANN, script).await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (_, sent) = server
        .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Offer", "text": "Buy!"}))
        .await;
    let id = sent["id"].as_str().unwrap();
    let failed = server.wait_status(id, "failed").await;
    assert_eq!(failed["error"]["permanent"], true, "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("I do not take mail from shops"), "{failed}");
    let notice = first_received(&server).await;
    let data = &notice["data"];
    assert_eq!((data["auto_reply"].as_bool(), data["stitch"]["reason"].as_str()), (Some(true), Some("bounce")));
    assert_eq!(data["conversation_id"], sent["conversation_id"]);
    assert_eq!(data["delivery_report"]["recipient"], ANN.0, "{data}");
    assert!(mail.inbox(ANN).await.is_empty(), "Ann's server kept nothing");
    let theirs = sisimai_on_first_mail(&mail).await;
    assert_eq!(theirs[0]["recipient"], ANN.0, "{theirs:?}");
    server.stop().await;
}

/// Exim, the MTA of Debian and of much shared hosting, accepts a mail it then cannot deliver
/// and returns it to the sender in a bounce of its own. It offers no DSN extension, so the
/// bounce carries no envelope id of ours: it is matched by the returned original's Message-ID,
/// fails the message, and Sisimai reads it as we do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exim_bounce_fails_the_message_it_returns() {
    let mail = MailServers::start().await;
    let exim = mail.start_exim().await;
    let server = TestServer::start(&mail.channel_via_mta("support", exim.port)).await;
    let (status, lost) = server
        .post("/v1/messages", json!({"channel": "support", "to": "nobody@example.net", "subject": "Lost", "text": "1"}))
        .await;
    assert_eq!(status, 202, "{lost}");
    let lost_id = lost["id"].as_str().unwrap();
    let bounce = first_received(&server).await;
    let data = &bounce["data"];
    let failed = server.wait_status(lost_id, "failed").await;
    assert_eq!(failed["error"]["permanent"], true, "{failed}");
    assert_eq!(data["stitch"]["reason"], "bounce");
    assert_eq!(data["auto_reply"], true);
    assert_eq!(data["conversation_id"], lost["conversation_id"]);
    assert_eq!(data["delivery_report"]["recipient"], "nobody@example.net", "{data}");
    assert!(data["delivery_report"]["original_envelope_id"].is_null(), "Exim offered no DSN: {data}");
    let log = exim.log();
    assert!(log.contains("** nobody@example.net"), "{log}");
    // Sisimai reads Exim's bounce as we do.
    let theirs = sisimai_on_first_mail(&mail).await;
    assert_eq!((&theirs[0]["recipient"], &theirs[0]["smtpagent"]), (&json!("nobody@example.net"), &json!("Exim")));
    assert_eq!(theirs[0]["deliverystatus"], data["delivery_report"]["status"]);
    assert_eq!(failed["error"]["code"], format!("bounce_{}", theirs[0]["deliverystatus"].as_str().unwrap()));
    server.stop().await;
}

/// Exim's delay warning, sent whether or not it was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exim_delay_warning_is_recorded_and_fails_nothing() {
    let mail = MailServers::start().await;
    let exim = mail.start_exim().await;
    let server = TestServer::start(&mail.channel_via_mta("support", exim.port)).await;
    delay_is_recorded_and_fails_nothing(&server).await;
    let log = exim.log();
    assert!(log.contains("== ann@slow.example.org") && log.contains("defer"), "{log}");
    server.stop().await;
}

/// A real MTA's delay notification (we ask for them with NOTIFY=DELAY): Postfix cannot reach
/// slow.example.org and tells the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postfix_delay_notification_is_recorded_and_fails_nothing() {
    let (_mail, postfix, server) = through_postfix().await;
    let (waiting_id, data) = delay_is_recorded_and_fails_nothing(&server).await;
    assert_eq!(data["delivery_report"]["original_envelope_id"], waiting_id);
    let log = postfix.log();
    assert!(log.contains("to=<ann@slow.example.org>") && log.contains("status=deferred"), "{log}");
    server.stop().await;
}

/// Sends to slow.example.org, which the MTA in front of the test mailbox cannot reach, and
/// checks the delay notification it returns: recorded on the message's conversation, and the
/// message stays sent, since it may yet arrive. The message's id and the report's message.
async fn delay_is_recorded_and_fails_nothing(server: &TestServer) -> (String, Value) {
    let (_, waiting) = server
        .post(
            "/v1/messages",
            json!({"channel": "support", "to": "ann@slow.example.org", "subject": "Slow", "text": "1"}),
        )
        .await;
    let waiting_id = waiting["id"].as_str().unwrap();
    server.wait_status(waiting_id, "sent").await;
    let data = first_received(server).await["data"].clone();
    assert_eq!(data["delivery_report"]["action"], "delayed", "{data}");
    assert!(data["delivery_report"]["status"].as_str().unwrap().starts_with("4."), "{data}");
    assert_eq!(data["conversation_id"], waiting["conversation_id"]);
    assert_eq!(data["auto_reply"], true);
    let (_, still) = server.get(&format!("/v1/messages/{waiting_id}")).await;
    assert_eq!(still["status"], "sent", "a delay fails nothing: {still}");
    (waiting_id.to_owned(), data)
}

/// Our reading of every bounce in the fixture corpus agrees with Sisimai's (Debian's
/// libsisimai-perl, the bounce parser senders classify returned mail with): the same failed
/// recipients and original Message-ID, permanent where it reads a 5.x.x status and not where it
/// reads 4.x.x. It also recognises the formats the fixtures are written in, among them the
/// plain-text bounces with no RFC 3464 report of qmail, Yahoo, GMX and 1&1, and OpenSMTPD's
/// report inside `multipart/mixed`. A customer who pastes a bounce into
/// their mail is no bounce to us, though Sisimai, which reads only bounce mailboxes, takes the
/// text for one.
#[test]
fn every_bounce_in_the_corpus_reads_as_sisimai_reads_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email");
    let channel = support_channel_config();
    let mut bounces: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("bounce-") && p.extension().unwrap() == "eml")
        .collect();
    bounces.sort();
    assert!(bounces.len() >= 5, "{bounces:?}");
    for path in &bounces {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let raw = switchboard::channels::email::mime::to_raw_inbound(&channel, std::fs::read(path).unwrap());
        let ours = raw.delivery_report.unwrap_or_else(|| panic!("{name}: not read as a bounce"));
        let theirs = sisimai(path);
        assert!(!theirs.is_empty(), "{name}: Sisimai finds no bounce");
        let their_recipients: Vec<&str> = theirs.iter().map(|r| r["recipient"].as_str().unwrap()).collect();
        let our_recipients = match ours.failed_recipients.is_empty() {
            true => ours.recipient.iter().cloned().collect(),
            false => ours.failed_recipients.clone(),
        };
        assert_eq!(our_recipients, their_recipients, "{name}");
        for record in &theirs {
            let permanent = record["deliverystatus"].as_str().unwrap().starts_with('5');
            assert_eq!(ours.is_permanent_failure(), permanent, "{name}: {record}");
            // Sisimai leaves it empty when it does not find it (OpenSMTPD's header part).
            if let Some(id) = record["messageid"].as_str().filter(|id| !id.is_empty()) {
                assert_eq!(ours.original_message_ids.first().map(String::as_str), Some(id), "{name}");
            }
        }
        let agent = theirs[0]["smtpagent"].as_str().unwrap();
        match name {
            "bounce-postfix" => assert_eq!(agent, "Postfix"),
            "bounce-qmail" => assert_eq!(agent, "qmail"),
            "bounce-yahoo" => assert_eq!(agent, "Yahoo"),
            "bounce-gmx" => assert_eq!(agent, "GMX"),
            "bounce-1und1" => assert_eq!(agent, "EinsUndEins"),
            "bounce-opensmtpd" => assert_eq!(agent, "OpenSMTPD"),
            // Captured from Exim 4.96 (`an_exim_bounce_fails_the_message_it_returns` and
            // `an_exim_delay_warning_is_recorded_and_fails_nothing` deliver them).
            "bounce-exim-4.96-failed" | "bounce-exim-4.96-delayed" => assert_eq!(agent, "Exim"),
            // Captured from Dovecot 2.3 (`a_sieve_rejection_by_the_recipients_server_fails_the_message`).
            "bounce-dovecot-2.3-sieve-reject" => assert_eq!(agent, "dovecot"),
            _ => {}
        }
    }
    let pasted = dir.join("customer-pastes-a-qmail-bounce.eml");
    assert_eq!(sisimai(&pasted)[0]["smtpagent"], "qmail");
    let raw = switchboard::channels::email::mime::to_raw_inbound(&channel, std::fs::read(&pasted).unwrap());
    assert!(raw.delivery_report.is_none() && !raw.auto_reply, "a customer's mail: {:?}", raw.delivery_report);
}

/// What Sisimai reads in the first mail of the support INBOX (the bounce a real server sent).
async fn sisimai_on_first_mail(mail: &MailServers) -> Vec<Value> {
    let first = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(first.path(), &mail.inbox(SUPPORT).await[0].2).unwrap();
    sisimai(first.path())
}

/// What Sisimai reads in the mail at `path`: one record per recipient it found bounced.
fn sisimai(path: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new("perl")
        .args(["-MSisimai", "-e", "print Sisimai->dump($ARGV[0], input => 'email')"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("perl: {e} (apt-get install libsisimai-perl; tests/run.sh does)"));
    assert!(
        out.status.success(),
        "Sisimai: {} (apt-get install libsisimai-perl)",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `support` mail channel's configuration, as the gateway reads it.
pub(crate) fn support_channel_config() -> switchboard::channels::email::config::EmailChannelConfig {
    let dir = tempfile::tempdir().unwrap();
    let block = "[[channels]]\nid = \"support\"\ntype = \"email\"\naddress = \"support@example.com\"\n\
                 [channels.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n";
    let config = switchboard::config::load_str(&config_text(dir.path(), "127.0.0.1:1", block)).unwrap();
    config
        .channels
        .into_iter()
        .find_map(|c| match c {
            switchboard::channels::ChannelConfig::Email(email) => Some(email),
            _ => None,
        })
        .unwrap()
}

/// A qmail-style bounce (no RFC 3464 report and no X-Failed-Recipients: qmail's own, Yahoo's)
/// fails the message it quotes, with qmail's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qmail_style_bounce_fails_the_message_it_quotes() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (_, sent) = server
        .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Your order 5", "text": "Shipped."}))
        .await;
    let id = sent["id"].as_str().unwrap();
    let header = server.wait_status(id, "sent").await["provider"]["message_id"].as_str().unwrap().to_owned();
    let path = format!("{}/tests/fixtures/email/bounce-qmail.eml", env!("CARGO_MANIFEST_DIR"));
    let bounce = std::fs::read_to_string(path)
        .unwrap()
        .replace("msg_01GGG.cnv_01HHH@example.com", &header)
        .replace("gone@example.net", ANN.0);
    mail.append(SUPPORT, &bounce).await;
    let failed = server.wait_status(id, "failed").await;
    assert_eq!(failed["error"]["code"], "bounce_5.1.1", "{failed}");
    assert_eq!(failed["error"]["message"], "Sorry, no mailbox here by that name. (#5.1.1)");
    let report = first_received(&server).await;
    assert_eq!(report["data"]["conversation_id"], sent["conversation_id"], "{report}");
    assert_eq!(report["data"]["stitch"]["reason"], "bounce");
    server.stop().await;
}

/// Idle SMTP sessions end with QUIT, never a dropped socket: when a reload replaces the channel,
/// after `idle_timeout`, and at shutdown. Postfix logs `quit=1` on each session's disconnect line
/// only when the client said QUIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_smtp_sessions_end_with_quit_on_reload_after_idle_timeout_and_at_shutdown() {
    let (mail, postfix, mut server) = through_postfix().await;
    let default_idle = mail.channel_via_mta("support", postfix.port);
    // The channel's [channels.smtp] table is the block's last.
    let short_idle = format!("{default_idle}idle_timeout = \"1s\"\n");
    let quits = || {
        let log = postfix.log();
        let disconnects: Vec<&str> = log.lines().filter(|l| l.contains(" disconnect from ")).collect();
        disconnects.iter().filter(|l| l.contains(" quit=1 ")).count()
    };
    async fn send(server: &TestServer, subject: &str) {
        let (status, sent) = server
            .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": subject, "text": "x"}))
            .await;
        assert_eq!(status, 202, "{sent}");
        server.wait_status(sent["id"].as_str().unwrap(), "sent").await;
    }

    // Kept for a minute by default: still open a second after the mail.
    send(&server, "One").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(quits(), 0, "{}", postfix.log());
    // A reload that changes the channel retires its adapter: the idle session gets QUIT.
    let report = server.reload(&short_idle).await;
    assert!(report.applied.iter().any(|a| a.contains("channel `support` reconfigured")), "{report:?}");
    loop_until(|| async { (quits() == 1).then_some(()) }).await;

    // idle_timeout = 1s: the next session gets QUIT about a second after its mail.
    send(&server, "Two").await;
    loop_until(|| async { (quits() == 2).then_some(()) }).await;

    // Back to a minute; shutdown ends the idle session.
    server.reload(&default_idle).await;
    send(&server, "Three").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(quits(), 2, "{}", postfix.log());
    server.stop().await;
    loop_until(|| async { (quits() == 3).then_some(()) }).await;
    // Every session the gateway opened said goodbye (the one other connection is the harness
    // checking that Postfix listens).
    let log = postfix.log();
    assert_eq!(log.matches(" connect from ").count(), 4, "{log}");
    assert_eq!(log.matches("lost connection after").count(), 1, "{log}");
    loop_until(|| async { (mail.inbox(ANN).await.len() == 3).then_some(()) }).await;
}

/// A channel block talking TLS to `localhost`, IMAP and SMTP both in `mode` (`implicit` or
/// `starttls`).
fn tls_channel(mail: &MailServers, mode: &str, ca: bool) -> String {
    let (imap_port, smtp_port) =
        if mode == "implicit" { (mail.imaps_port, mail.smtps_port) } else { (mail.imap_port, mail.smtp_port) };
    let ca_line = if ca { format!("ca_file = \"{}\"", mail.ca_file.display()) } else { String::new() };
    format!(
        r#"
[[channels]]
id = "support"
type = "email"
address = "{}"
[channels.imap]
host = "localhost"
port = {imap_port}
tls = "{mode}"
username = "{}"
password = "{}"
{ca_line}
[channels.smtp]
host = "localhost"
port = {smtp_port}
tls = "{mode}"
username = "{}"
password = "{}"
{ca_line}
"#,
        SUPPORT.0, SUPPORT.0, SUPPORT.1, SUPPORT.0, SUPPORT.1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_implicit_and_starttls_with_a_private_ca() {
    let mail = MailServers::start_tls().await;
    for mode in ["implicit", "starttls"] {
        let server = TestServer::start(&tls_channel(&mail, mode, true)).await;
        let subject = format!("Over {mode}");
        mail.append(SUPPORT, &mail_text("ann@example.org", &subject, &format!("{mode}@example.org"), "", "secure"))
            .await;
        let received = loop_until(|| async {
            server
                .all_events()
                .await
                .into_iter()
                .find(|e| e["type"] == "message.received" && e["data"]["subject"] == subject.as_str())
        })
        .await;
        // The reply goes out over SMTP in the same mode and arrives.
        let (_, queued) = server
            .post(
                "/v1/messages",
                json!({"conversation_id": received["data"]["conversation_id"], "text": format!("reply over {mode}")}),
            )
            .await;
        server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
        server.stop().await;
    }
    assert_eq!(mail.inbox(ANN).await.len(), 2, "both replies were delivered");

    // Without the private CA the certificate is refused, and the channel says so.
    let server = TestServer::start(&tls_channel(&mail, "implicit", false)).await;
    let ready = loop_until(|| async {
        let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        (code == 503).then_some(ready)
    })
    .await;
    let state = ready["checks"]["channel:support"].as_str().unwrap().to_owned();
    assert!(state.contains("imap_connect") && state.to_lowercase().contains("certificate"), "{state}");
    let (_, queued) = server.post("/v1/messages", json!({"channel": "support", "to": ANN.0, "text": "no CA"})).await;
    // The first attempt runs at once and fails the TLS handshake; a permanent classification
    // would have failed the message by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, m) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(m["status"], "queued", "an untrusted SMTP certificate is a temporary failure: the message waits: {m}");
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("switchboard_outbound_total{channel=\"support\",status=\"retry\"}")),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_import_marks_seen_or_moves_to_a_folder() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Archive"]).await;
    for i in 0..3 {
        mail.append(SUPPORT, &mail_text("a@example.org", &format!("A{i}"), &format!("a{i}@example.org"), "", "x"))
            .await;
    }
    // seen: flagged \Seen after the commit, still in INBOX.
    let marking = mail.channel_with_imap("support", "after_import = \"seen\"");
    let server = TestServer::start(&marking).await;
    loop_until(|| async { (count(&server).await == 3).then_some(()) }).await;
    let inbox = loop_until(|| async {
        let inbox = mail.inbox(SUPPORT).await;
        seen(&inbox).iter().all(|read| *read).then_some(inbox)
    })
    .await;
    assert_eq!(inbox.len(), 3);
    server.stop().await;

    // move:Archive on a fresh store: everything is imported again (a new gateway), then moved.
    // 150 mails: the server's answers to the moves (an EXPUNGE each) are more than async-imap
    // keeps aside (100), which the IDLE loop takes as "look again" once, and then settles.
    for i in 3..150 {
        let id = format!("a{i}@example.org");
        mail.append(SUPPORT, &mail_text("a@example.org", &format!("A{i}"), &id, "", "x")).await;
    }
    let moving = mail.channel_with_imap("support", "after_import = \"move:Archive\"");
    let server = TestServer::start(&moving).await;
    loop_until(|| async { (count(&server).await == 150).then_some(()) }).await;
    loop_until(|| async { mail.inbox(SUPPORT).await.is_empty().then_some(()) }).await;
    let mut session = mail.login(SUPPORT).await;
    let archive = session.select("Archive").await.unwrap();
    assert_eq!(archive.exists, 150, "moved, not deleted");
    session.logout().await.unwrap();
    mail.append(SUPPORT, &mail_text("a@example.org", "After the move", "after-move@example.org", "", "x")).await;
    loop_until(|| async { (count(&server).await == 151).then_some(()) }).await;
    let moving_session = mail.client_sessions().into_iter().filter(|s| s.contains(" UID MOVE ")).collect::<Vec<_>>();
    assert_eq!(moving_session.len(), 1, "one session moved them all");
    // Consecutive UIDs go as ranges (`1:50`), not a thousand numbers on one command line.
    let moves: Vec<&str> = moving_session[0].lines().filter(|l| l.contains(" UID MOVE ")).collect();
    assert!(moves.iter().all(|l| l.len() < 60) && moves.iter().any(|l| l.contains(':')), "{moves:?}");
    assert!(moving_session[0].contains(" IDLE\r\n"), "and settled in IDLE");
    let before_idle = &moving_session[0][..moving_session[0].find(" IDLE\r\n").unwrap()];
    assert_eq!(before_idle.matches(" UID SEARCH ").count(), 2, "looked again once, then waited: {before_idle}");
    server.stop().await;
}

/// `move:` on a server without MOVE: copied, flagged `\Deleted` and, with UIDPLUS, expunged by
/// UID; without UIDPLUS nothing is expunged (a plain EXPUNGE would also take mail that someone
/// else flagged and that is not imported yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_without_the_move_extension_copies_and_expunges_only_what_was_imported() {
    for uidplus in [true, false] {
        let mail = MailServers::start_without_move(uidplus).await;
        {
            let mut session = mail.login(SUPPORT).await;
            let capabilities = session.capabilities().await.unwrap();
            assert!(!capabilities.has_str("MOVE") && capabilities.has_str("UIDPLUS") == uidplus);
            session.create("Archive").await.unwrap();
            session.logout().await.unwrap();
        }
        for i in 0..3 {
            mail.append(SUPPORT, &mail_text("a@example.org", &format!("M{i}"), &format!("m{i}@example.org"), "", "x"))
                .await;
        }
        let moving = mail.channel_with_imap("support", "after_import = \"move:Archive\"");
        let server = TestServer::start(&moving).await;
        loop_until(|| async { (count(&server).await == 3).then_some(()) }).await;
        let archived = loop_until(|| async {
            let mut session = mail.login(SUPPORT).await;
            let exists = session.select("Archive").await.unwrap().exists;
            session.logout().await.unwrap();
            (exists == 3).then_some(exists)
        })
        .await;
        assert_eq!(archived, 3, "every imported mail copied");
        // With UIDPLUS the INBOX empties; without, its mails end flagged and stay.
        loop_until(|| async {
            let inbox = mail.inbox(SUPPORT).await;
            let flagged = inbox.iter().all(|(_, flags, _)| flags.iter().any(|f| f.contains("Deleted")));
            (if uidplus { inbox.is_empty() } else { inbox.len() == 3 && flagged }).then_some(())
        })
        .await;
        server.stop().await;
        let sent = mail.client_commands();
        assert!(!sent.contains("UID MOVE"), "MOVE used though not offered:\n{sent}");
        assert!(sent.contains("UID COPY"), "{sent}");
        assert!(!sent.lines().any(|l| l.trim_end().ends_with(" EXPUNGE")), "a plain EXPUNGE was sent:\n{sent}");
        if uidplus {
            // Exactly the imported UIDs (a plain EXPUNGE could also take mail not imported yet
            // that someone else flagged).
            assert!(sent.contains("UID EXPUNGE 1,2,3") || sent.contains("UID EXPUNGE 1:3"), "{sent}");
        } else {
            assert!(!sent.contains("EXPUNGE"), "{sent}");
            assert_eq!(mail.inbox(SUPPORT).await.len(), 3);
        }
    }
}

/// freescout#5284, #5368: one of our channels answers a customer and copies the address of
/// another of our channels. The copy that mailbox gets is the message the first channel sent,
/// not a mail to the second from one of our addresses: no conversation with ourselves opens
/// there (whose answers would bounce between the two channels). The customer's answer to all
/// stays in the first channel's conversation instead of opening one in each mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_our_mail_in_another_of_our_mailboxes_and_the_answer_to_all_stay_one_conversation() {
    let mail = MailServers::start().await;
    // Sales reads and sends as Bea's mailbox.
    let sales = mail.channel("sales", "").replace(SUPPORT.0, BEA.0).replace(SUPPORT.1, BEA.1);
    let server = TestServer::start(&format!("{}{sales}", mail.channel("support", ""))).await;
    let quote = crate::mail_servers::mail(ANN.0, BEA.0, "Quote", "quote-1@example.org", "", "A quote, please.");
    mail.append(BEA, &quote).await;
    let asked = first_received(&server).await["data"].clone();
    assert_eq!(asked["channel"]["id"], "sales");
    let cnv = asked["conversation_id"].as_str().unwrap();
    let body = json!({"conversation_id": cnv, "text": "Here it is.", "cc": [SUPPORT.0]});
    let (_, reply) = server.post("/v1/messages", body).await;
    server.wait_status(reply["id"].as_str().unwrap(), "sent").await;
    loop_until(|| async { (!mail.inbox(SUPPORT).await.is_empty()).then_some(()) }).await;
    let ours = loop_until(|| async { mail.inbox(ANN).await.pop() }).await;
    let ours = String::from_utf8_lossy(&ours.2).into_owned();
    let ours = ours.lines().find_map(|l| l.strip_prefix("Message-ID: ")).unwrap().to_owned();

    // Ann answers all: Bea's (sales') copy joins the conversation; support leaves its copy to
    // sales. What she writes to support alone about it is support's.
    let answering = |cc: &str| format!("{cc}In-Reply-To: {ours}\nReferences: <quote-1@example.org> {ours}\n");
    let all = crate::mail_servers::mail(
        ANN.0,
        BEA.0,
        "Re: Quote",
        "ann-all@example.org",
        &answering("Cc: support@example.com\n"),
        "Thanks!",
    );
    mail.append(BEA, &all).await;
    mail.append(SUPPORT, &all).await;
    let alone = mail_text(ANN.0, "Re: Quote", "ann-alone@example.org", &answering(""), "Can support help?");
    mail.append(SUPPORT, &alone).await;

    // Everything before a last mail has been decided once that one is in.
    mail.append(SUPPORT, &mail_text(CARL.0, "Last", "last-copy@example.org", "", "Done")).await;
    let received = loop_until(|| async {
        let received = received(&server).await;
        let last = received.iter().any(|m| m["subject"] == "Last");
        (last && received.iter().filter(|m| m["channel"]["id"] == "sales").count() == 2).then_some(received)
    })
    .await;
    let on = |channel: &str| -> Vec<(String, String)> {
        let of = received.iter().filter(|m| m["channel"]["id"] == channel);
        of.map(|m| {
            (
                m["provider"]["message_id"].as_str().unwrap().to_owned(),
                m["stitch"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
    };
    let pair = |id: &str, reason: &str| (id.to_owned(), reason.to_owned());
    assert_eq!(on("sales"), [pair("quote-1@example.org", "new"), pair("ann-all@example.org", "in_reply_to")]);
    assert_eq!(
        on("support"),
        [pair("ann-alone@example.org", "new"), pair("last-copy@example.org", "new")],
        "the copy of our mail made no message on support, nor did Ann's answer to all"
    );
    let (_, refused) = server.get("/v1/channels/support/rejected").await;
    let refused = refused["rejected"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("an answer in conversation {cnv} of channel sales")), "{reason}");

    // Support keeps such an answer when sales only sends (no [channels.imap]: it never reads
    // its copy, and refused here the answer would be lost), and when sales is no longer
    // configured: no one else would. (Each answers only our mail, under a new subject: nothing
    // on support threads it.)
    let mut server = server;
    let (imap, smtp) = (sales.find("[channels.imap]").unwrap(), sales.find("[channels.smtp]").unwrap());
    let sales_sending_only = format!("{}{}", &sales[..imap], &sales[smtp..]);
    let headers = format!("Cc: support@example.com\nIn-Reply-To: {ours}\nReferences: {ours}\n");
    let stages = [
        (format!("{}{sales_sending_only}", mail.channel("support", "")), "One more", "ann-all-3@example.org"),
        (mail.channel("support", ""), "Another order", "ann-all-2@example.org"),
    ];
    for (config, subject, id) in stages {
        server.reload(&config).await;
        mail.append(SUPPORT, &crate::mail_servers::mail(ANN.0, BEA.0, subject, id, &headers, "More.")).await;
        loop_until(|| async {
            let events = server.all_events().await;
            events.iter().any(|e| e["data"]["provider"]["message_id"] == id).then_some(())
        })
        .await;
    }
    server.stop().await;
}

/// A customer's first mail to two of our mailboxes at once (To support, Cc sales) is one
/// conversation, on the channel that read it first; the other refuses its copy, naming the
/// message it is. A stranger's mail that reuses that Message-ID is no copy: it is their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_mail_to_two_of_our_mailboxes_is_one_conversation() {
    let mail = MailServers::start().await;
    // Sales reads Bea's mailbox.
    let sales = mail.channel("sales", "").replace(SUPPORT.0, BEA.0).replace(SUPPORT.1, BEA.1);
    let server = TestServer::start(&format!("{}{sales}", mail.channel("support", ""))).await;
    let both = crate::mail_servers::mail(
        ANN.0,
        SUPPORT.0,
        "Order 7 and a quote",
        "both-1@example.org",
        &format!("Cc: {}\n", BEA.0),
        "Where is order 7? And a quote for 8, please.",
    );
    mail.append(SUPPORT, &both).await;
    let first = first_received(&server).await["data"].clone();
    assert_eq!(first["channel"]["id"], "support");
    mail.append(BEA, &both).await;
    let refused = refused_items(&server, "sales", 1).await;
    assert_eq!(
        refused[0]["reason"],
        format!("a copy of message {} of channel support, which it was sent to too", first["id"].as_str().unwrap())
    );
    let stranger = crate::mail_servers::mail(
        STRANGER.0,
        BEA.0,
        "Order 7 and a quote",
        "both-1@example.org",
        &format!("Cc: {}\n", SUPPORT.0),
        "Not the same mail.",
    );
    mail.append(BEA, &stranger).await;
    let theirs =
        loop_until(|| async { received(&server).await.into_iter().find(|m| m["channel"]["id"] == "sales") }).await;
    assert_eq!((&theirs["from"]["address"], &theirs["stitch"]["reason"]), (&json!(STRANGER.0), &json!("new")));
    assert_eq!(received(&server).await.len(), 2, "Ann's mail once, the stranger's once");
    server.stop().await;
}

/// zammad#5716: Ann and her colleague Bea write to each other, and Bea copies us into her
/// reply. Ann then answers the first mail of the thread (which we never saw) with us in Cc: it
/// joins the conversation Bea's reply opened, since both answer the same mail, and our reply
/// carries the thread's start in References. A stranger answering that first mail is not let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_we_were_copied_into_late_stays_one_conversation() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let answering_the_start =
        |cc: &str| format!("Cc: {cc}\nIn-Reply-To: <start@example.org>\nReferences: <start@example.org>\n");
    let headers = answering_the_start(SUPPORT.0);
    let bea = crate::mail_servers::mail(BEA.0, ANN.0, "Re: Project", "bea-1@example.org", &headers, "Copying support.");
    mail.append(SUPPORT, &bea).await;
    let opened = first_received(&server).await["data"].clone();
    assert_eq!(opened["stitch"]["reason"], "new");
    let cnv = opened["conversation_id"].as_str().unwrap().to_owned();

    let ann = crate::mail_servers::mail(ANN.0, BEA.0, "Re: Project", "ann-2@example.org", &headers, "My answer.");
    mail.append(SUPPORT, &ann).await;
    let carl_headers = answering_the_start(SUPPORT.0);
    let carl = crate::mail_servers::mail(CARL.0, SUPPORT.0, "Re: Project", "carl-1@example.org", &carl_headers, "Me?");
    mail.append(SUPPORT, &carl).await;
    let received = loop_until(|| async {
        let received = received(&server).await;
        (received.len() == 3).then_some(received)
    })
    .await;
    assert_eq!(
        (received[1]["conversation_id"].as_str(), received[1]["stitch"]["reason"].as_str()),
        (Some(cnv.as_str()), Some("in_reply_to")),
        "Ann's answer to the thread's start joins it"
    );
    assert_eq!(received[1]["in_reply_to"], Value::Null, "it answers the start, which we never saw");
    assert_ne!(received[2]["conversation_id"].as_str(), Some(cnv.as_str()), "a stranger starts his own");

    // Our reply names the whole thread, its start first.
    let (_, reply) = server.post("/v1/messages", json!({"conversation_id": cnv, "text": "On it."})).await;
    server.wait_status(reply["id"].as_str().unwrap(), "sent").await;
    let sent = loop_until(|| async { mail.inbox(BEA).await.pop() }).await;
    let sent = String::from_utf8_lossy(&sent.2).replace("\r\n ", " ").replace("\r\n\t", " ");
    let references = sent.lines().find(|l| l.starts_with("References:")).unwrap_or_default().to_owned();
    let order: Vec<usize> = ["start@example.org", "bea-1@example.org", "ann-2@example.org"]
        .iter()
        .map(|id| references.find(id).unwrap_or_else(|| panic!("{id} not in {references}\n{sent}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{references}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newsletter_replies_stay_apart_and_a_reply_reopens_a_closed_conversation() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;

    // A newsletter to a list reached us (Bcc) and is stored; three readers answer it. They are
    // not participants of its conversation, so the sender guard keeps them apart.
    mail.append(
        SUPPORT,
        &crate::mail_servers::mail(
            "news@shop.example",
            "readers@lists.example",
            "November news",
            "news-11@shop.example",
            "",
            "News",
        ),
    )
    .await;
    for (i, reader) in ["r1@example.org", "r2@example.org", "r3@example.org"].iter().enumerate() {
        mail.append(
            SUPPORT,
            &mail_text(
                reader,
                "Re: November news",
                &format!("reply{i}@example.org"),
                "In-Reply-To: <news-11@shop.example>\nReferences: <news-11@shop.example>\n",
                "Question about the news",
            ),
        )
        .await;
    }
    let replies = loop_until(|| async {
        let r: Vec<Value> = helpdesk.events_of("message.received");
        (r.len() >= 4).then(|| r[1..].to_vec())
    })
    .await;
    let conversations: std::collections::HashSet<String> =
        replies.iter().map(|e| e["data"]["conversation_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(conversations.len(), 3, "each reader has their own conversation: {replies:?}");
    assert!(replies.iter().all(|e| e["data"]["stitch"]["reason"] == "new"));

    // Close Ann's conversation; her reply reopens it.
    mail.append(SUPPORT, &mail_text("ann@example.org", "Help", "help-1@example.org", "", "Help please")).await;
    let first = nth_received(&helpdesk, 4).await;
    let cnv = first["conversation_id"].as_str().unwrap();
    let (code, closed) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/conversations/{cnv}"),
            Some(TOKEN),
            Some(br#"{"status": "closed"}"#.to_vec()),
        )
        .await;
    assert_eq!((code, closed["status"].as_str()), (200, Some("closed")));
    mail.append(
        SUPPORT,
        &mail_text(
            "ann@example.org",
            "Re: Help",
            "help-2@example.org",
            "In-Reply-To: <help-1@example.org>\n",
            "Still broken",
        ),
    )
    .await;
    let again = nth_received(&helpdesk, 5).await;
    assert_eq!(
        (again["conversation_id"].as_str(), again["stitch"]["reason"].as_str()),
        (Some(cnv), Some("in_reply_to"))
    );
    let updates: Vec<String> = helpdesk
        .events_of("conversation.updated")
        .iter()
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(updates, vec!["closed", "open"]);
    server.stop().await;
}

/// Servers end open sessions now and then (Gmail and Exchange close IDLE sessions on their own
/// schedule, an administrator kicks clients, a restart): the channel reconnects at once, and a
/// session that comes back is no `channel.error` for the helpdesk nor a 503 for the monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_ends_comes_back_at_once_without_a_channel_error() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let idling = || mail.client_sessions().iter().filter(|s| s.contains(" IDLE\r\n")).count();
    loop_until(|| async { (idling() == 1).then_some(()) }).await;
    mail.kick(SUPPORT.0);
    loop_until(|| async { (idling() == 2).then_some(()) }).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "After a kick", "kicked@example.org", "", "x")).await;
    assert_eq!(nth_received(&helpdesk, 0).await["subject"], "After a kick");
    let errors: Vec<Value> = server.all_events().await.into_iter().filter(|e| e["type"] == "channel.error").collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    server.stop().await;
}

/// Web contact forms send From `noreply@…` with the customer in Reply-To: each customer gets
/// their own contact and conversation (not one "noreply" conversation for everyone, joined by
/// the form's fixed subject), and the reply goes to the customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_form_mail_belongs_to_its_reply_to_address() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let form = |customer: &str, id: &str| {
        mail_text(
            "Shop Website <noreply@shop.example.net>",
            "New contact form message",
            id,
            &format!("Reply-To: Customer <{customer}>\n"),
            &format!("Message from {customer}: where is my order?"),
        )
    };
    mail.append(SUPPORT, &form(ANN.0, "form-1@shop.example.net")).await;
    mail.append(SUPPORT, &form(STRANGER.0, "form-2@shop.example.net")).await;
    let received = loop_until(|| async {
        let events: Vec<Value> =
            server.all_events().await.into_iter().filter(|e| e["type"] == "message.received").collect();
        (events.len() == 2).then_some(events)
    })
    .await;
    let (first, second) = (&received[0], &received[1]);
    assert_ne!(first["data"]["conversation_id"], second["data"]["conversation_id"], "one conversation per customer");
    assert_ne!(first["data"]["contact_id"], second["data"]["contact_id"]);
    assert_eq!(first["data"]["from"]["address"], "noreply@shop.example.net");
    assert_eq!(first["data"]["reply_to"], json!({"address": ANN.0, "name": "Customer"}));
    assert_eq!(second["data"]["reply_to"]["address"], STRANGER.0);
    server.validate_contract(vec![json!({"schema": "Event", "instance": first})]).await;
    let contact = server.get(&format!("/v1/contacts/{}", first["data"]["contact_id"].as_str().unwrap())).await.1;
    assert!(contact["identities"].as_array().unwrap().contains(&json!(format!("email:{}", ANN.0))), "{contact}");

    // The reply goes to Ann, not to the form's sender.
    let answer = json!({"conversation_id": first["data"]["conversation_id"], "text": "It ships today."});
    let (_, delivered) = send_to_ann(&server, &mail, answer).await;
    assert!(String::from_utf8_lossy(&delivered).contains("It ships today."));
    server.stop().await;
}

/// Our own sent mail back in the mailbox (a Bcc to ourselves, an alias that includes our address)
/// is recognised by its Message-ID as the message it is: no conversation with ourselves, nothing
/// for a helpdesk auto-acknowledgement to loop on. A customer's reply after it still threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_sent_mail_coming_back_is_refused() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (queued, delivered) = send_to_ann(
        &server,
        &mail,
        json!({"channel": "support", "to": ANN.0, "subject": "Your order", "text": "Shipped."}),
    )
    .await;
    mail.append(SUPPORT, &String::from_utf8_lossy(&delivered)).await;
    let header = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await.1["provider"]
        ["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply =
        mail_text(ANN.0, "Re: Your order", "ann-reply@example.org", &format!("In-Reply-To: <{header}>\n"), "Thanks");
    mail.append(SUPPORT, &reply).await;
    let received = first_received(&server).await;
    assert_eq!(received["data"]["subject"], "Re: Your order", "the copy was refused, the reply stored: {received}");
    assert_eq!(received["data"]["conversation_id"], queued["conversation_id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&server).await, 1);

    // Nor does the gateway send to itself: refused before anything is stored.
    let events_before = server.all_events().await.len();
    for own in ["support@example.com", "Support+cnv_01ABC@Example.com"] {
        let (code, refused) =
            server.post("/v1/messages", json!({"channel": "support", "to": own, "text": "loop?"})).await;
        assert_eq!(code, 422, "{refused}");
        assert_eq!(refused["error"]["field"], "to", "{refused}");
    }
    assert_eq!(server.all_events().await.len(), events_before);
    server.stop().await;
}

/// A conversation we started by mail is found by its subject too: the customer's reply lost
/// its threading headers (and our Message-ID was rewritten on the way), but "Re: <subject>"
/// from the same address joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_conversation_we_started_is_found_by_subject_without_headers() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let (_, queued) = server
        .post("/v1/messages", json!({"channel": "support", "to": ANN.0, "subject": "Your refund 77", "text": "Done."}))
        .await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let created = server.all_events().await.into_iter().find(|e| e["type"] == "conversation.created").unwrap();
    assert_eq!(created["data"]["subject"], "Your refund 77");
    let reply = mail_text(ANN.0, "AW: Your refund 77", "no-headers@example.org", "", "Thanks, received.");
    mail.append(SUPPORT, &reply).await;
    let event = first_received(&server).await;
    assert_eq!(event["data"]["conversation_id"], queued["conversation_id"]);
    assert_eq!(event["data"]["stitch"]["reason"], "subject");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_token_threads_a_reply_that_lost_every_header() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "reply_token = true")).await;
    let (queued, delivered) =
        send_to_ann(&server, &mail, json!({"channel": "support", "to": ANN.0, "subject": "Your ticket", "text": "Hi"}))
            .await;
    let raw = String::from_utf8_lossy(&delivered).to_string();
    let cnv = queued["conversation_id"].as_str().unwrap();
    let token_address = format!("support+{cnv}@example.com");
    assert!(raw.lines().any(|l| l.starts_with("Reply-To:") && l.contains(&format!("<{token_address}>"))), "{raw}");

    // A mail system stripped In-Reply-To and References and the subject changed; the reply went
    // to the Reply-To address (lowercased on the way, as some systems do).
    let reply = crate::mail_servers::mail(
        "ann@example.org",
        &token_address.to_lowercase(),
        "different subject",
        "stripped@example.org",
        "",
        "Answer",
    );
    mail.append(SUPPORT, &reply).await;
    let event = first_received(&server).await;
    assert_eq!(event["data"]["conversation_id"], cnv);
    assert_eq!(event["data"]["stitch"]["reason"], "token");
    server.stop().await;
}

/// FreeScout #5620's case: a relay rewrote our Message-ID, so the reply's In-Reply-To and
/// References name a mail we never saw, and the customer changed the subject. With `body_token`
/// the `[ref:cnv_…]` line the reply quotes (text and HTML) still finds the conversation; a
/// stranger quoting the same mail (it was forwarded to them) starts their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_body_token_a_reply_quoting_us_finds_its_conversation_when_our_message_id_was_rewritten() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "body_token = true")).await;
    let (queued, delivered) = send_to_ann(
        &server,
        &mail,
        json!({"channel": "support", "to": ANN.0, "subject": "Your order", "text": "It shipped.", "html": "<html><body><p>It shipped.</p></body></html>"}),
    )
    .await;
    let cnv = queued["conversation_id"].as_str().unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&delivered).unwrap();
    let (text, html) = (parsed.body_text(0).unwrap().to_string(), parsed.body_html(0).unwrap().to_string());
    let marker = format!("[ref:{cnv}]");
    assert!(text.trim_end().ends_with(&marker), "{text}");
    assert!(html.contains(&format!(">{marker}</p></body>")), "{html}");

    let quoting = |from: &str, message_id: &str| {
        let quoted = text.lines().map(|l| format!("> {l}")).collect::<Vec<_>>().join("\n");
        format!(
            "From: {from}\nTo: {}\nSubject: A different question\nMessage-ID: <{message_id}>\nIn-Reply-To: <0100018c-rewritten@email.amazonses.com>\nReferences: <0100018c-rewritten@email.amazonses.com>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nAnd when does it arrive?\n\nOn Mon, 23 Nov 2026, Example Support wrote:\n{quoted}\n--b\nContent-Type: text/html; charset=utf-8\n\n<div>And when does it arrive?</div><blockquote>{html}</blockquote>\n--b--\n",
            SUPPORT.0
        )
    };
    mail.append(SUPPORT, &quoting(ANN.0, "reply@example.org")).await;
    let reply = first_received(&server).await;
    assert_eq!(reply["data"]["conversation_id"], cnv, "{reply}");
    assert_eq!(reply["data"]["stitch"]["reason"], "token");
    assert_eq!(reply["data"]["reply_text"], "And when does it arrive?");

    mail.append(SUPPORT, &quoting("eve@example.net", "forwarded@example.net")).await;
    let stranger = loop_until(|| async {
        let events = server.all_events().await;
        events
            .into_iter()
            .find(|e| e["type"] == "message.received" && e["data"]["from"]["address"] == "eve@example.net")
    })
    .await;
    assert_ne!(stranger["data"]["conversation_id"], cnv);
    assert_eq!(stranger["data"]["stitch"]["reason"], "new");
    server.stop().await;
}

/// A helpdesk editor sends HTML alone: the mail also carries it as text (multipart/alternative),
/// for text-only mail clients and because spam filters score HTML-only mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_only_reply_also_goes_out_as_text() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let html = "<p>Your parcel <b>left</b> today.</p><p>Tracking: 123&nbsp;456</p>";
    let body = json!({"channel": "support", "to": ANN.0, "subject": "Parcel", "html": html});
    let (queued, delivered) = send_to_ann(&server, &mail, body).await;
    let parsed = mail_parser::MessageParser::default().parse(&delivered).unwrap();
    let kinds: Vec<String> = parsed
        .parts
        .iter()
        .filter_map(|p| mail_parser::MimeHeaders::content_type(p))
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        ["multipart/mixed", "multipart/alternative", "text/plain", "text/html"],
        "{}",
        String::from_utf8_lossy(&delivered)
    );
    let text = match &parsed.parts[2].body {
        mail_parser::PartType::Text(text) => text.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(text.contains("Your parcel left today.") && text.contains("Tracking: 123"), "{text}");
    let (_, stored) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(stored["text"], Value::Null, "the message stays as the helpdesk sent it");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_each_sent_mail_lands_in_the_sent_folder() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Sent"]).await;
    let config = mail.channel_with_imap("support", "sent_folder = \"Sent\"");
    let server = TestServer::start(&config).await;
    let mut headers = Vec::new();
    for text in ["keep a copy", "and another", "and a third"] {
        if text == "and a third" {
            // The server ends the kept session (as its autologout would): the next copy logs in again.
            loop_until(|| async {
                (mail.client_sessions().iter().filter(|s| s.contains(" APPEND ")).count() == 1).then_some(())
            })
            .await;
            loop_until(|| async { (mail.client_sessions().concat().matches(" APPEND ").count() == 2).then_some(()) })
                .await;
            mail.kick(SUPPORT.0);
        }
        // The first copies Bea and Carl blind: the Sent copy names them, the mail does not.
        let bcc = if text == "keep a copy" { json!([BEA.0, CARL.0]) } else { json!([]) };
        let body = json!({"channel": "support", "to": ANN.0, "subject": "Copy", "text": text, "bcc": bcc});
        let (_, queued) = server.post("/v1/messages", body).await;
        let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
        headers.push(sent["provider"]["message_id"].as_str().unwrap().to_owned());
    }
    let header = headers[0].clone();
    let copy = loop_until(|| async {
        let mut session = mail.login(SUPPORT).await;
        session.select("Sent").await.unwrap();
        let fetched: Vec<_> =
            futures_util::TryStreamExt::try_collect(session.uid_fetch("1:*", "(FLAGS BODY.PEEK[])").await.unwrap())
                .await
                .unwrap_or_default();
        let found = fetched.iter().find_map(|f| {
            let body = String::from_utf8_lossy(f.body()?).into_owned();
            body.contains(&header).then(|| (body, f.flags().map(|fl| format!("{fl:?}")).collect::<Vec<_>>()))
        });
        session.logout().await.unwrap();
        found
    })
    .await;
    assert!(copy.0.contains("keep a copy"));
    assert!(copy.0.starts_with("Bcc: bea@example.org,\r\n carl@example.org\r\n"), "{}", copy.0);
    let delivered = loop_until(|| async { mail.inbox(BEA).await.pop() }).await;
    assert!(!String::from_utf8_lossy(&delivered.2).contains("Bcc:"), "the mail itself names no Bcc");
    assert!(copy.1.iter().any(|f| f.contains("Seen")), "the copy is marked read: {:?}", copy.1);
    // All three copies, through one IMAP login per server session (not one per mail); the
    // last session is logged out at shutdown.
    let appending =
        || mail.client_sessions().into_iter().filter(|s| s.contains(" APPEND \"Sent\"")).collect::<Vec<_>>();
    loop_until(|| async {
        (appending().iter().map(|s| s.matches(" APPEND ").count()).sum::<usize>() == 3).then_some(())
    })
    .await;
    assert_eq!(appending().len(), 2, "{:?}", mail.client_sessions());
    // The copy in Sent is not imported as inbound mail (only INBOX is watched).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&server).await, 0);
    server.stop().await;
    assert!(appending()[1].contains(" LOGOUT"), "{:?}", appending());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_reusing_a_message_id_is_kept_apart_and_both_mails_are_kept() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Order 5", "same-id@example.org", "", "Ann's mail")).await;
    mail.append(
        SUPPORT,
        &mail_text("stranger@example.net", "Hello", "same-id@example.org", "", "A different mail, same Message-ID"),
    )
    .await;
    // Ann answers her own thread; the reference matches both conversations, the guard picks hers.
    mail.append(
        SUPPORT,
        &mail_text(
            "ann@example.org",
            "Re: Order 5",
            "ann-2@example.org",
            "In-Reply-To: <same-id@example.org>\n",
            "Any news?",
        ),
    )
    .await;
    let received = loop_until(|| async {
        let r: Vec<Value> = server.all_events().await.into_iter().filter(|e| e["type"] == "message.received").collect();
        (r.len() >= 3).then_some(r)
    })
    .await;
    let (ann, stranger, reply) = (&received[0]["data"], &received[1]["data"], &received[2]["data"]);
    assert_eq!(ann["provider"]["message_id"], stranger["provider"]["message_id"], "both kept despite the shared id");
    assert_ne!(ann["conversation_id"], stranger["conversation_id"]);
    assert_eq!(reply["conversation_id"], ann["conversation_id"]);
    assert_eq!(reply["stitch"]["reason"], "in_reply_to");
    server.stop().await;
}

/// One mail delivered twice into the mailbox (freescout#5485, #5638): written to us and Cc an
/// alias that another system forwards here. Both copies pass the real Postfix and Dovecot's
/// LMTP, which give each its own trace fields (Received, Return-Path, Delivered-To), and the
/// forwarder added its own: two sources, one mail. The customer's message comes in once. A
/// different mail reusing its Message-ID (another Date and text) still comes in
/// (freescout#5591).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mail_delivered_twice_comes_in_once() {
    let (mail, postfix, server) = through_postfix().await;
    let written = mail_text(ANN.0, "Order 5", "ann-twice@example.org", "Cc: sales@example.net\n", "Where is it?")
        .replace('\n', "\r\n");
    submit(postfix.port, ANN.0, SUPPORT.0, &written).await;
    // The second delivery comes after the first is stored: the store knows the mail already.
    first_received(&server).await;
    let forwarded = format!(
        "Received: from mx.example.org by fwd.example.net; Mon, 23 Nov 2026 10:00:05 +0000\r\nX-Forwarded-To: {}\r\n{written}",
        SUPPORT.0
    );
    submit(postfix.port, "SRS0=x1=YZ=example.org=ann@fwd.example.net", SUPPORT.0, &forwarded).await;
    let reused = written.replace("10:00:00", "11:30:00").replace("Where is it?", "Another mail, same Message-ID");
    submit(postfix.port, ANN.0, SUPPORT.0, &reused).await;
    let inbox = loop_until(|| async {
        let inbox = mail.inbox(SUPPORT).await;
        (inbox.len() == 3).then_some(inbox)
    })
    .await;
    let (first, second) = (String::from_utf8_lossy(&inbox[0].2), String::from_utf8_lossy(&inbox[1].2));
    assert!(first.contains("Delivered-To: support@example.com") && second.contains("fwd.example.net"), "{second}");
    assert_ne!(first, second, "two deliveries, two sources");

    // Everything before a last mail has been decided once that one is in.
    mail.append(SUPPORT, &mail_text(BEA.0, "Last", "last@example.org", "", "Done")).await;
    let received = loop_until(|| async {
        let received = received(&server).await;
        received.iter().any(|m| m["subject"] == "Last").then_some(received)
    })
    .await;
    let texts: Vec<&str> = received.iter().map(|m| m["text"].as_str().unwrap().trim()).collect();
    assert_eq!(texts, ["Where is it?", "Another mail, same Message-ID", "Done"]);
    let (once, reuse) = (&received[0], &received[1]);
    assert_eq!(once["provider"]["message_id"], reuse["provider"]["message_id"]);
    // The copy kept is the first delivery, byte for byte.
    let response = server.http.get(once["source"]["url"].as_str().unwrap()).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().to_vec(), inbox[0].2);
    let dir = server.stop().await;
    assert_eq!(blobs_kept_for_nothing(dir.path()), Vec::<String>::new(), "the second delivery's source was not kept");
    drop(postfix);
}

/// The same mail delivered twice lands in one batch (both copies were in the mailbox before
/// the gateway read it): one message, and only the first copy's source kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_delivered_twice_into_one_batch_keeps_one_source() {
    let mail = MailServers::start().await;
    let written = mail_text(ANN.0, "Order 6", "ann-batch@example.org", "", "Where is it?");
    mail.append(SUPPORT, &format!("Delivered-To: {}\n{written}", SUPPORT.0)).await;
    mail.append(SUPPORT, &format!("Delivered-To: sales@example.net\n{written}")).await;
    mail.append(SUPPORT, &mail_text(BEA.0, "Last", "last-batch@example.org", "", "Done")).await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    loop_until(|| async { (count(&server).await == 2).then_some(()) }).await;
    let received = received_subjects(&server).await;
    assert_eq!(received, ["Last", "Order 6"]);
    let first = first_received(&server).await;
    let url = first["data"]["source"]["url"].as_str().unwrap();
    let kept = server.http.get(url).bearer_auth(TOKEN).send().await.unwrap().bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&kept).starts_with("Delivered-To: support@example.com"));
    let dir = server.stop().await;
    assert_eq!(blobs_kept_for_nothing(dir.path()), Vec::<String>::new(), "the second copy's source was not kept");
}

/// The blobs of the store in `dir` that no message, refusal or attachment refers to.
fn blobs_kept_for_nothing(dir: &std::path::Path) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.join("switchboard.db")).unwrap();
    let mut query =
        db.prepare("SELECT sha256 FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM attachments)").unwrap();
    query.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// A store written before mail was known by what its author wrote (schema version 7 kept each
/// mail's whole-source hash): when the folder is read again after the upgrade (here a new
/// UIDVALIDITY), the mail it holds is recognised by its old key, not imported a second time.
/// And once the stored mail is re-keyed in the background, a second delivery of a mail stored
/// before the upgrade (other trace fields, other bytes) is recognised too, as is one of a mail
/// refused then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_stored_before_the_dedup_key_changed_is_not_imported_again() {
    let mail = MailServers::start().await;
    let old = |i: usize| mail_text(ANN.0, &format!("Old {i}"), &format!("old-{i}@example.org"), "", "Stored long ago");
    let vacation = mail_text(CARL.0, "Out of office", "away@example.net", "Auto-Submitted: auto-replied\n", "Away");
    for i in 0..2 {
        mail.append(SUPPORT, &old(i)).await;
    }
    mail.append(SUPPORT, &vacation).await;
    let config = mail.channel("support", "");
    let server = TestServer::start(&config).await;
    loop_until(|| async { (count(&server).await == 2 && rejected_count(&server).await == 1).then_some(()) }).await;
    let dir = server.stop().await;
    // The store as version 7 left it: each mail under `sha256:` of its source, no store_meta,
    // nor the tables of later migrations (11: calendar_uids).
    let db = rusqlite::Connection::open(dir.path().join("switchboard.db")).unwrap();
    db.execute_batch(
        "UPDATE messages SET provider_message_id = 'sha256:' || json_extract(body, '$.source.sha256')
             WHERE direction = 'inbound';
         UPDATE rejected_inbound SET dedup_key = 'sha256:' || json_extract(summary, '$.source.sha256');
         DROP TABLE store_meta;
         DROP TABLE calendar_uids;
         PRAGMA user_version = 7;",
    )
    .unwrap();
    let old_keys: i64 = db
        .query_row("SELECT count(*) FROM messages WHERE provider_message_id LIKE 'sha256:%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(old_keys, 2);
    drop(db);
    force_new_uidvalidity(&mail).await;
    mail.append(SUPPORT, &mail_text(ANN.0, "New", "new@example.org", "", "After the upgrade")).await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async { server.all_events().await.iter().any(|e| e["data"]["subject"] == "New").then_some(()) })
        .await;
    assert_eq!(received_subjects(&server).await, vec!["New", "Old 0", "Old 1"], "the resync recognised both");

    // The stored mail is re-keyed in the background; then second deliveries arrive.
    let db_path = server.dir.path().join("switchboard.db");
    loop_until(|| async {
        let db = rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        db.query_row("SELECT value FROM store_meta WHERE key = 'mail_rekeyed_at'", [], |r| r.get::<_, String>(0)).ok()
    })
    .await;
    mail.append(SUPPORT, &format!("Delivered-To: sales@example.net\n{}", old(0))).await;
    mail.append(SUPPORT, &format!("Delivered-To: sales@example.net\n{vacation}")).await;
    mail.append(SUPPORT, &mail_text(ANN.0, "Newer", "newer@example.org", "", "Later still")).await;
    loop_until(|| async { server.all_events().await.iter().any(|e| e["data"]["subject"] == "Newer").then_some(()) })
        .await;
    assert_eq!(received_subjects(&server).await, vec!["New", "Newer", "Old 0", "Old 1"], "no second Old 0");
    assert_eq!(rejected_count(&server).await, 1, "the second delivery of a refused mail is known as refused");
    let dir = server.stop().await;
    let db = rusqlite::Connection::open(dir.path().join("switchboard.db")).unwrap();
    let keys: Vec<String> = db
        .prepare("SELECT provider_message_id FROM messages WHERE direction = 'inbound' ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(keys.iter().all(|k| k.starts_with("mail-sha256:")), "{keys:?}");
}

/// The items `channel` refused, once there are exactly `n` of them (30 s at most).
async fn refused_items(server: &TestServer, channel: &str, n: usize) -> Vec<Value> {
    let listing = format!("/v1/channels/{channel}/rejected");
    loop_until(|| async {
        let (_, listed) = server.get(&listing).await;
        listed["rejected"].as_array().filter(|items| items.len() == n).cloned()
    })
    .await
}

/// How many items the support channel refused.
async fn rejected_count(server: &TestServer) -> usize {
    let (_, listed) = server.get("/v1/channels/support/rejected").await;
    listed["rejected"].as_array().map_or(0, Vec::len)
}

/// Submits `mail` to the SMTP server on `port` as one transaction.
async fn submit(port: u16, from: &str, to: &str, mail: &str) {
    use lettre::AsyncTransport;
    let smtp = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1").port(port).build();
    let envelope = lettre::address::Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    smtp.send_raw(&envelope, mail.as_bytes()).await.unwrap();
}

/// An agent (Bea, one of the channel's `forwarders`) forwards a customer's mail from her own
/// mailbox with Gmail: the conversation is Ann's, the reply goes to Ann, and Ann's answer to it
/// joins her conversation. The same forward from someone who is no forwarder stays theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_an_agent_forwards_is_the_customers() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk_and(&mail, &format!("forwarders = [\"{}\"]", BEA.0)).await;
    let forwarded = "Could you take this one?\n\nBea\n\n---------- Forwarded message ---------\nFrom: Ann Smith <ann@example.org>\nDate: Mon, 23 Nov 2026 at 09:41\nSubject: Order 5\nTo: <bea@example.org>\n\n\nWhere is my order 5?\n";
    mail.append(
        SUPPORT,
        &crate::mail_servers::mail(BEA.0, SUPPORT.0, "Fwd: Order 5", "fwd-1@example.org", "", forwarded),
    )
    .await;
    let received = nth_received(&helpdesk, 0).await;
    assert_eq!(received["from"]["address"], BEA.0, "{received}");
    assert_eq!(received["forwarded_from"], json!({"address": "ann@example.org", "name": "Ann Smith"}));
    assert_eq!(received["sent_at"], "2026-11-23T09:41:00.000Z", "when Ann wrote it, not when Bea forwarded it");
    assert!(received["reply_text"].as_str().unwrap().contains("Where is my order 5?"), "all of it is new to us");
    let cnv = received["conversation_id"].as_str().unwrap();
    let (_, conversation) = server.get(&format!("/v1/conversations/{cnv}")).await;
    let (_, contact) = server.get(&format!("/v1/contacts/{}", conversation["contact_id"].as_str().unwrap())).await;
    assert_eq!(contact["name"], "Ann Smith", "{contact}");
    server.validate_contract(vec![json!({"schema": "Message", "instance": received})]).await;

    // The reply goes to Ann, and her answer joins her conversation.
    let (code, queued) = server.post("/v1/messages", json!({"conversation_id": cnv, "text": "On its way."})).await;
    assert_eq!(code, 202, "{queued}");
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let delivered = loop_until(|| async { mail.inbox(ANN).await.pop() }).await;
    assert!(String::from_utf8_lossy(&delivered.2).contains("On its way."));
    let our_id = sent["provider"]["message_id"].as_str().unwrap();
    mail.append(
        SUPPORT,
        &mail_text(
            "Ann Smith <ann@example.org>",
            "Re: Order 5",
            "ann-2@example.org",
            &format!("In-Reply-To: <{our_id}>\n"),
            "Thanks!",
        ),
    )
    .await;
    let answer = nth_received(&helpdesk, 1).await;
    assert_eq!(
        (answer["conversation_id"].as_str(), answer["stitch"]["reason"].as_str()),
        (Some(cnv), Some("in_reply_to"))
    );

    // Carl is no forwarder: his forward is his.
    mail.append(
        SUPPORT,
        &crate::mail_servers::mail(CARL.0, SUPPORT.0, "Fwd: Order 5", "fwd-2@example.org", "", forwarded),
    )
    .await;
    let carls = nth_received(&helpdesk, 2).await;
    assert!(carls.get("forwarded_from").is_none(), "{carls}");
    assert_ne!(carls["conversation_id"], cnv);
    server.stop().await;
}

/// chatwoot#15869: a customer renamed the thread mid-way ("Wrong size in order 5", answering our
/// reply to "Order 5"). Our next reply answers the renamed subject, not the first one, and a
/// later mail of hers on the new subject that lost its headers still finds the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_renamed_mid_thread_is_the_one_answered_and_matched() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    mail.append(SUPPORT, &mail_text(ANN.0, "Order 5", "order5@example.org", "", "Where is it?")).await;
    let first = nth_received(&helpdesk, 0).await;
    let cnv = first["conversation_id"].as_str().unwrap();
    let ann_mails = |n: usize| {
        let mail = &mail;
        loop_until(move || async move {
            let inbox = mail.inbox(ANN).await;
            (inbox.len() == n).then(|| String::from_utf8_lossy(&inbox[n - 1].2).to_string())
        })
    };
    let reply = json!({"conversation_id": cnv, "text": "On its way."});
    let (_, queued) = server.post("/v1/messages", reply).await;
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    assert!(ann_mails(1).await.contains("Subject: Re: Order 5"));

    let our_id = sent["provider"]["message_id"].as_str().unwrap();
    let renamed = format!("In-Reply-To: <{our_id}>\nReferences: <order5@example.org> <{our_id}>\n");
    mail.append(SUPPORT, &mail_text(ANN.0, "Wrong size in order 5", "size@example.org", &renamed, "It is an M.")).await;
    let second = nth_received(&helpdesk, 1).await;
    assert_eq!(
        (second["conversation_id"].as_str(), second["stitch"]["reason"].as_str()),
        (Some(cnv), Some("in_reply_to"))
    );

    let (_, queued) =
        server.post("/v1/messages", json!({"conversation_id": cnv, "text": "Sorry, an L is coming."})).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let answer = ann_mails(2).await;
    assert!(answer.contains("Subject: Re: Wrong size in order 5"), "{answer}");
    assert!(answer.contains("In-Reply-To: <size@example.org>"), "{answer}");

    // Her next mail on the new subject went through a system that dropped every header.
    mail.append(SUPPORT, &mail_text(ANN.0, "Re: Wrong size in order 5", "later@example.org", "", "Thanks!")).await;
    let third = nth_received(&helpdesk, 2).await;
    assert_eq!((third["conversation_id"].as_str(), third["stitch"]["reason"].as_str()), (Some(cnv), Some("subject")));
    server.stop().await;
}

/// Cc, both ways, through a real MTA. A customer's Cc is kept apart from To on the message; a
/// reply can copy people (`cc`), and each gets the mail with a Cc header; a Cc recipient the
/// server refuses at RCPT fails the send before anyone gets it, naming the address; a later
/// bounce about a Cc recipient only is recorded in the conversation and the message, which
/// reached its recipient, stays sent. Bad `cc` values are refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_is_kept_on_mail_in_and_copied_on_replies_and_a_cc_failure_is_told_apart() {
    let (mail, postfix, server) = through_postfix().await;
    let colleague = BEA.0;
    let cc_header = format!("Cc: Colleague <{colleague}>\n");
    mail.append(SUPPORT, &mail_text(ANN.0, "Invoice 9", "cc-in@example.org", &cc_header, "See my colleague.")).await;
    let first = first_received(&server).await["data"].clone();
    assert_eq!(first["to"], json!([{"address": SUPPORT.0}]), "{first}");
    assert_eq!(first["cc"], json!([{"address": colleague, "name": "Colleague"}]), "{first}");
    let cnv = first["conversation_id"].as_str().unwrap();

    // Reply-all: Ann and her colleague each get it, with the Cc header; Carl, copied blind, gets it
    // too, and no copy names him.
    let reply_all = json!({"conversation_id": cnv, "text": "Done.", "cc": [colleague], "bcc": [CARL.0]});
    let (queued, delivered) = send_to_ann(&server, &mail, reply_all).await;
    let raw = String::from_utf8_lossy(&delivered).to_string();
    assert!(raw.contains(&format!("Cc: {colleague}")), "{raw}");
    let copy = loop_until(|| async { mail.inbox(BEA).await.pop() }).await;
    assert!(String::from_utf8_lossy(&copy.2).contains("Subject: Re: Invoice 9"));
    let blind = loop_until(|| async { mail.inbox(CARL).await.pop() }).await;
    for got in
        [raw.clone(), String::from_utf8_lossy(&copy.2).into_owned(), String::from_utf8_lossy(&blind.2).into_owned()]
    {
        let header = &got[..got.find("\r\n\r\n").unwrap()];
        assert!(!header.contains(CARL.0) && !header.contains("Bcc:"), "{header}");
    }
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(sent["bcc"], json!([{"address": CARL.0}]), "{sent}");
    let log = postfix.log();
    for to in [colleague, ANN.0, CARL.0] {
        assert!(log.contains(&format!("to=<{to}>")), "{log}");
    }

    // A Cc recipient refused at RCPT: nobody gets the mail, the failure names the address.
    let ann_before = mail.inbox(ANN).await.len();
    let (status, refused) = server
        .post("/v1/messages", json!({"conversation_id": cnv, "text": "Again.", "cc": ["refused@example.org"]}))
        .await;
    assert_eq!(status, 202, "{refused}");
    let failed = server.wait_status(refused["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["error"]["permanent"], true, "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("refused@example.org"), "{failed}");
    assert_eq!(failed["cc"], json!([{"address": "refused@example.org"}]));
    assert_eq!(failed["from"], json!({"address": SUPPORT.0, "name": "Example Support"}), "ours, as the mail says");

    // A Cc recipient whose mailbox does not exist: Postfix takes the mail and bounces for that
    // recipient only. Ann has the mail; the message stays sent.
    let (_, partly) = server
        .post("/v1/messages", json!({"conversation_id": cnv, "text": "Third.", "cc": ["nobody@example.org"]}))
        .await;
    let partly_id = partly["id"].as_str().unwrap();
    server.wait_status(partly_id, "sent").await;
    let bounce = loop_until(|| async {
        let events = server.all_events().await;
        events.into_iter().find(|e| e["type"] == "message.received" && e["data"]["delivery_report"].is_object())
    })
    .await;
    let report = &bounce["data"]["delivery_report"];
    assert_eq!(report["original_envelope_id"], partly_id, "{report}");
    assert_eq!(report["failed_recipients"], json!(["nobody@example.org"]), "{report}");
    assert_eq!(bounce["data"]["conversation_id"], cnv);
    let (_, still) = server.get(&format!("/v1/messages/{partly_id}")).await;
    assert_eq!(still["status"], "sent", "the mail reached Ann: {still}");
    assert_eq!(mail.inbox(ANN).await.len(), ann_before + 1, "the refused send gave Ann nothing");

    // Refused before anything is stored.
    let messages_before = server.get(&format!("/v1/conversations/{cnv}/messages")).await.1;
    for field in ["cc", "bcc"] {
        for (list, why) in [
            (json!(["not an address"]), "invalid"),
            (json!([SUPPORT.0]), "our own address"),
            (json!(["support+x@example.com"]), "our own address with a tag"),
            (json!("ann@example.org"), "not a list"),
        ] {
            let (status, body) =
                server.post("/v1/messages", json!({"conversation_id": cnv, "text": "x", field: list})).await;
            assert!(status == 422 || status == 400, "{field} {why}: {status} {body}");
            assert_eq!(body["error"]["field"], field, "{field} {why}: {body}");
        }
    }
    let named = json!({"channel": "support", "to": "Ann <ann@example.org>", "text": "x"});
    let (status, body) = server.post("/v1/messages", named).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("to")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("without a display name"), "{body}");
    assert_eq!(server.get(&format!("/v1/conversations/{cnv}/messages")).await.1, messages_before);
    // Every event of it (cc in and out, the bounce's failed_recipients) keeps to the schemas.
    let all = server.all_events().await;
    server.validate_contract(all.into_iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    server.stop().await;
}

/// Ann writes in ("Order 12") and the helpdesk acknowledges it automatically: her message, the
/// acknowledgement as queued, and the acknowledgement as it reached her mailbox.
async fn ann_asks_and_is_acknowledged(
    mail: &MailServers,
    helpdesk: &Receiver,
    server: &TestServer,
) -> (Value, Value, Vec<u8>) {
    mail.append(SUPPORT, &mail_text(ANN.0, "Order 12", "order12@example.org", "", "Is it shipped?")).await;
    let first = nth_received(helpdesk, 0).await;
    let ack = json!({"conversation_id": first["conversation_id"], "text": "We got your mail.", "auto_reply": true,
                     "in_reply_to": first["id"]});
    let (queued, delivered) = send_to_ann(server, mail, ack).await;
    (first, queued, delivered)
}

/// The classic helpdesk mail loop: an acknowledgement answers a customer, her vacation notice
/// answers the acknowledgement, the next acknowledgement answers the notice... An automatic send
/// (`auto_reply: true`) goes out marked for her automatons (RFC 3834 Auto-Submitted, Exchange's
/// X-Auto-Response-Suppress), and an automatic answer to an automatic message is refused before
/// anything is stored; a person may still answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_sends_are_marked_and_never_answer_an_automatic_message() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let (first, queued, delivered) = ann_asks_and_is_acknowledged(&mail, &helpdesk, &server).await;
    let cnv = first["conversation_id"].as_str().unwrap();
    let raw = String::from_utf8_lossy(&delivered).to_string();
    assert!(raw.contains("Auto-Submitted: auto-replied\r\n"), "{raw}");
    assert!(raw.contains("X-Auto-Response-Suppress: All\r\n"), "{raw}");
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(sent["auto_reply"], true, "{sent}");

    // Her vacation notice answers the acknowledgement and joins the conversation.
    let our_id = sent["provider"]["message_id"].as_str().unwrap();
    let headers = format!("In-Reply-To: <{our_id}>\nAuto-Submitted: auto-replied\n");
    mail.append(SUPPORT, &mail_text(ANN.0, "Out of office: Re: Order 12", "ooo@example.org", &headers, "Back Monday."))
        .await;
    let notice = nth_received(&helpdesk, 1).await;
    assert_eq!((notice["conversation_id"].as_str(), notice["auto_reply"].as_bool()), (Some(cnv), Some(true)));

    let listed = || async { server.get(&format!("/v1/conversations/{cnv}/messages")).await.1 };
    let before = listed().await;
    let again =
        json!({"conversation_id": cnv, "text": "We got your mail.", "auto_reply": true, "in_reply_to": notice["id"]});
    let (status, body) = server.post("/v1/messages", again).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("in_reply_to")), "{body}");
    assert_eq!(listed().await, before, "nothing stored");
    let person = json!({"conversation_id": cnv, "text": "Enjoy your holiday.", "in_reply_to": notice["id"]});
    let (status, body) = server.post("/v1/messages", person).await;
    assert_eq!(status, 202, "{body}");
    server.stop().await;
}

/// The same against a real responder: Ann's Sieve vacation (Dovecot's Pigeonhole, RFC 5230)
/// leaves our acknowledgement unanswered, as RFC 3834 asks of it for mail marked automatic, and
/// answers the agent's own reply once; its notice joins the conversation, flagged automatic,
/// in reply to the agent's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_vacation_responder_answers_the_agent_and_not_our_automatic_mail() {
    let script = "require \"vacation\";\nvacation :days 1 :subject \"Away\" \"I am away until Monday. Ann\";\n";
    let mail = MailServers::start_with_sieve(ANN, script).await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    let (first, _, _) = ann_asks_and_is_acknowledged(&mail, &helpdesk, &server).await;
    let cnv = first["conversation_id"].as_str().unwrap();
    let person = json!({"conversation_id": cnv, "text": "It ships today.", "in_reply_to": first["id"]});
    let (status, reply) = server.post("/v1/messages", person).await;
    assert_eq!(status, 202, "{reply}");
    let notice = nth_received(&helpdesk, 1).await;
    assert_eq!((notice["subject"].as_str(), notice["auto_reply"].as_bool()), (Some("Away"), Some(true)), "{notice}");
    assert_eq!(
        (notice["conversation_id"].as_str(), notice["in_reply_to"].as_str()),
        (Some(cnv), reply["id"].as_str()),
        "{notice}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&server).await, 2, "one notice: none for our acknowledgement");
    server.stop().await;
}

/// The loop the rule above cannot see: a responder that does not mark its mail automatic (a
/// supplier's ticket system acknowledging each of our acknowledgements with a new ticket, a new
/// thread each time). Automatic sends to one contact are limited per hour (default 3), counted
/// across her conversations and across a restart; the one over the limit is refused before
/// anything is stored, while a person may still write to her, another contact still gets
/// automatic mail, and the sends under the limit all went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_sends_to_one_contact_are_limited_per_hour_to_end_loops_across_threads() {
    let mail = MailServers::start().await;
    let (helpdesk, server) = with_helpdesk(&mail).await;
    for n in 0..4 {
        let subject = format!("Ticket {} received", 1000 + n);
        let mail_text = mail_text(ANN.0, &subject, &format!("t{n}@example.org"), "", "We got your request.");
        mail.append(SUPPORT, &mail_text).await;
    }
    let mut conversations = Vec::new();
    for n in 0..4 {
        conversations.push(nth_received(&helpdesk, n).await["conversation_id"].as_str().unwrap().to_owned());
    }
    conversations.sort();
    conversations.dedup();
    assert_eq!(conversations.len(), 4, "each ticket its own conversation: {conversations:?}");
    let ack = |cnv: &str| json!({"conversation_id": cnv, "text": "We got your mail.", "auto_reply": true});
    for cnv in &conversations[..3] {
        let (status, body) = server.post("/v1/messages", ack(cnv)).await;
        assert_eq!(status, 202, "{body}");
        server.wait_status(body["id"].as_str().unwrap(), "sent").await;
    }
    let listed = |cnv: String| {
        let server = &server;
        async move { server.get(&format!("/v1/conversations/{cnv}/messages")).await.1 }
    };
    let fourth = conversations[3].clone();
    let before = listed(fourth.clone()).await;
    let (status, body) = server.post("/v1/messages", ack(&fourth)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("auto_reply_limit")), "{body}");
    assert_eq!(body["error"]["field"], "auto_reply", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.auto_replies_per_contact_per_hour = 3"), "{message}");
    assert_eq!(listed(fourth.clone()).await, before, "nothing stored");
    // A direct automatic send to her address is the same contact.
    let direct = json!({"channel": "support", "to": ANN.0, "text": "Ack.", "auto_reply": true});
    assert_eq!(server.post("/v1/messages", direct.clone()).await.0, 422);
    let person = json!({"conversation_id": fourth, "text": "Thanks, we are on it."});
    assert_eq!(server.post("/v1/messages", person).await.0, 202);

    mail.append(SUPPORT, &mail_text(BEA.0, "Broken lid", "lid@example.org", "", "Lid broke.")).await;
    let bea = nth_received(&helpdesk, 4).await;
    let (status, body) = server.post("/v1/messages", ack(bea["conversation_id"].as_str().unwrap())).await;
    assert_eq!(status, 202, "another contact is not held back: {body}");

    // The count is the store's: a restart does not reset it.
    let config = format!("{}{}", mail.channel("support", ""), webhook("h", &helpdesk, "[\"1s\"]"));
    let server = TestServer::start_in(server.stop().await, &config).await;
    let (status, body) = server.post("/v1/messages", direct).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("auto_reply_limit")), "{body}");
    let acks = loop_until(|| async {
        let inbox = mail.inbox(ANN).await;
        let acks: Vec<_> =
            inbox.into_iter().filter(|m| String::from_utf8_lossy(&m.2).contains("We got your mail.")).collect();
        (acks.len() >= 3).then_some(acks)
    })
    .await;
    assert_eq!(acks.len(), 3, "the acknowledgements under the limit went out, and no more");
    server.stop().await;
}

/// A reply whose HTML shows an image (a pasted screenshot, a signature logo) sends it inline:
/// the image travels beside the HTML in a multipart/related with the Content-ID the HTML names
/// (`cid:`), while other attachments stay attachments. A malformed content_id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_images_of_an_html_reply_travel_beside_the_html() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "")).await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
    let body = json!({"channel": "support", "to": ANN.0, "subject": "Your screen", "text": "See the image.",
        "html": "<p>See <img src=\"cid:shot-1@example.com\"></p>",
        "attachments": [
            {"filename": "shot.png", "content_type": "image/png", "content_base64": png, "content_id": "<shot-1@example.com>"},
            {"filename": "notes.txt", "content_type": "text/plain", "content_base64": "bm90ZXM="}]});
    let (queued, delivered) = send_to_ann(&server, &mail, body).await;
    let raw = String::from_utf8_lossy(&delivered).to_string();
    let at = |needle: &str| raw.find(needle).unwrap_or_else(|| panic!("no {needle} in {raw}"));
    assert!(at("multipart/alternative") < at("text/plain"), "{raw}");
    assert!(at("text/plain") < at("multipart/related") && at("multipart/related") < at("text/html"), "{raw}");
    assert!(at("text/html") < at("Content-ID: <shot-1@example.com>"), "{raw}");
    let disposition =
        |name: &str| raw.lines().find(|l| l.contains(&format!("filename=\"{name}\""))).unwrap_or_default();
    assert!(disposition("notes.txt").starts_with("Content-Disposition: attachment"), "{raw}");
    assert!(disposition("shot.png").starts_with("Content-Disposition: inline"), "{raw}");
    let (_, message) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(message["attachments"][0]["content_id"], "shot-1@example.com", "{message}");

    let bad = json!({"channel": "support", "to": ANN.0, "text": "x",
        "attachments": [{"content_type": "image/png", "content_base64": png, "content_id": "two words"}]});
    let (status, body) = server.post("/v1/messages", bad).await;
    assert!(status == 400 || status == 422, "{status} {body}");
    assert_eq!(body["error"]["field"], "attachments[0].content_id", "{body}");
    server.stop().await;
}

/// A mailbox that also receives `sales@` (an alias forwarded into it): mail to the alias is the
/// channel's, the reply comes from the address the customer wrote to, a reply token on the
/// alias threads, and the alias counts as ours wherever our address does (no sending to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_an_alias_is_answered_from_the_alias() {
    let mail = MailServers::start().await;
    let server = TestServer::start(&mail.channel("support", "aliases = [\"sales@example.com\"]")).await;
    let to_sales =
        crate::mail_servers::mail(ANN.0, "Sales <sales@example.com>", "Quote", "quote@example.org", "", "Price?");
    mail.append(SUPPORT, &to_sales).await;
    let first = first_received(&server).await["data"].clone();
    let cnv = first["conversation_id"].as_str().unwrap();
    let (queued, delivered) = send_to_ann(&server, &mail, json!({"conversation_id": cnv, "text": "10 EUR."})).await;
    let raw = String::from_utf8_lossy(&delivered).to_string();
    assert!(raw.contains("From: \"Example Support\" <sales@example.com>"), "{raw}");
    let (_, sent) = server.get(&format!("/v1/messages/{}", queued["id"].as_str().unwrap())).await;
    assert_eq!(sent["from"]["address"], "sales@example.com", "{sent}");

    // Her answer lost its headers but went to the alias's reply token.
    let token = format!("sales+{cnv}@example.com");
    mail.append(SUPPORT, &crate::mail_servers::mail(ANN.0, &token, "other", "answer@example.org", "", "OK")).await;
    let answer = loop_until(|| async {
        let events = server.all_events().await;
        events.into_iter().filter(|e| e["type"] == "message.received").nth(1)
    })
    .await;
    assert_eq!(
        (answer["data"]["conversation_id"].as_str(), answer["data"]["stitch"]["reason"].as_str()),
        (Some(cnv), Some("token"))
    );

    for body in [
        json!({"channel": "support", "to": "sales@example.com", "text": "loop"}),
        json!({"channel": "support", "to": ANN.0, "text": "loop", "cc": ["Sales+x@Example.com"]}),
    ] {
        let (status, refused) = server.post("/v1/messages", body).await;
        assert_eq!(status, 422, "{refused}");
    }
    server.stop().await;
}

/// One mail the server cannot deliver (its file is unreadable to Dovecot, which answers its
/// FETCH with NO) must not stop the folder: the mails around it are imported, the refusal shows
/// in /readyz and as a channel.error, and once the server delivers it again it comes in (after a
/// restart, from the stored list; at the next round, while running) — each mail exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_the_server_refuses_to_deliver_does_not_stop_the_folder() {
    use std::os::unix::fs::PermissionsExt;
    let mail = MailServers::start().await;
    for name in ["before", "broken", "after"] {
        mail.append(SUPPORT, &mail_text(ANN.0, name, &format!("{name}@example.org"), "", name)).await;
    }
    let broken = mail.mail_file(SUPPORT, "<broken@example.org>");
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o000)).unwrap();
    let config = mail.channel_with_imap("support", "unfetchable_retry = \"1s\"");
    let server = TestServer::start(&config).await;
    loop_until(|| async { (received_subjects(&server).await == ["after", "before"]).then_some(()) }).await;
    let error = loop_until(|| async {
        let events = server.all_events().await;
        events.into_iter().find(|e| e["type"] == "channel.error" && e["data"]["error"]["code"] == "imap_unfetchable")
    })
    .await;
    assert!(error["data"]["error"]["message"].as_str().unwrap().contains("UID 2"), "{error}");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    assert!(ready["checks"]["channel:support"].as_str().unwrap().contains("imap_unfetchable"), "{ready}");

    // Restarted while it is still refused: it is still known, and still reported.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async {
        let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        let check = ready["checks"]["channel:support"].as_str().unwrap_or("").to_owned();
        (code == 503 && check.contains("imap_unfetchable") && check.contains("UID 2")).then_some(())
    })
    .await;

    // The server delivers it again: the next round (a new mail wakes IDLE) brings it in.
    // (Dovecot may have renamed the file meanwhile, moving it from new/ to cur/.)
    let broken = mail.mail_file(SUPPORT, "<broken@example.org>");
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o600)).unwrap();
    mail.append(SUPPORT, &mail_text(ANN.0, "later", "later@example.org", "", "later")).await;
    loop_until(|| async { (received_subjects(&server).await == ["after", "before", "broken", "later"]).then_some(()) })
        .await;
    loop_until(|| async {
        let (code, _) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        (code == 200).then_some(())
    })
    .await;
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received_subjects(&server).await, ["after", "before", "broken", "later"], "each exactly once");
    server.stop().await;
}

/// A mail over `max_mail_bytes` is not fetched whole (one giant mail must not exhaust a small
/// machine's memory at every retry): it comes in from its header — sender, subject, threading —
/// with the mail listed under `attachments_skipped`, stays on the server untouched by
/// `after_import`, and the mail after it is imported whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_over_max_mail_bytes_comes_in_from_its_header_alone() {
    let mail = MailServers::start().await;
    let big = "x".repeat(100_000);
    mail.append(SUPPORT, &mail_text(ANN.0, "Huge scan", "huge@example.org", "", &big)).await;
    mail.append(SUPPORT, &mail_text(ANN.0, "Small", "small@example.org", "", "hello")).await;
    let config = mail.channel("support", "max_mail_bytes = 50000");
    let server =
        TestServer::start(&config.replacen("[channels.imap]\n", "[channels.imap]\nafter_import = \"seen\"\n", 1)).await;
    let received = loop_until(|| async {
        let events = server.all_events().await;
        let received: Vec<Value> =
            events.into_iter().filter(|e| e["type"] == "message.received").map(|e| e["data"].clone()).collect();
        (received.len() == 2).then_some(received)
    })
    .await;
    let (huge, small) = (&received[0], &received[1]);
    assert_eq!((huge["subject"].as_str(), huge["from"]["address"].as_str()), (Some("Huge scan"), Some(ANN.0)));
    assert_eq!(huge["provider"]["message_id"], "huge@example.org");
    assert_eq!(huge["text"], Value::Null, "{huge}");
    assert_eq!(huge["attachments"], json!([]));
    let skipped = &huge["attachments_skipped"][0];
    assert_eq!(
        (skipped["filename"].as_str(), skipped["content_type"].as_str()),
        (Some("message.eml"), Some("message/rfc822"))
    );
    assert!(skipped["size"].as_u64().unwrap() > 100_000, "{skipped}");
    assert!(skipped["reason"].as_str().unwrap().contains("max_mail_bytes"), "{skipped}");
    assert_eq!(small["text"].as_str().map(str::trim), Some("hello"));
    assert!(mail.client_commands().contains("BODY.PEEK[HEADER]"));
    // Only the small one was marked seen.
    loop_until(|| async {
        let inbox = mail.inbox(SUPPORT).await;
        (seen(&inbox) == [false, true]).then_some(())
    })
    .await;
    server.stop().await;
}

/// Folder names as a Polish mailbox shows them: IMAP knows them in modified UTF-7 and refuses the
/// UTF-8 form. A watched folder "Zgłoszenia", `move:Załatwione` and the `sent_folder` "Elementy
/// wysłane" all work, written as the operator sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_names_with_non_ascii_characters_work_as_written() {
    let mail = MailServers::start().await;
    let mut session = mail.login(SUPPORT).await;
    for wire in ["Zg&AUI-oszenia", "Za&AUI-atwione", "Elementy wys&AUI-ane"] {
        session.create(wire).await.unwrap();
    }
    let filed = mail_text(ANN.0, "Reklamacja", "rekl@example.org", "", "Proszę o zwrot.").replace('\n', "\r\n");
    session.append("Zg&AUI-oszenia", None, None, filed).await.unwrap();
    session.logout().await.unwrap();
    let imap = "folders = [\"Zgłoszenia\"]\nafter_import = \"move:Załatwione\"\nsent_folder = \"Elementy wysłane\"";
    let server = TestServer::start(&mail.channel_with_imap("support", imap)).await;
    let received = first_received(&server).await["data"].clone();
    assert_eq!(received["subject"], "Reklamacja");
    let (_, queued) = server
        .post("/v1/messages", json!({"conversation_id": received["conversation_id"], "text": "Zwrot wysłany."}))
        .await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let count_in = |wire: &'static str| {
        let mail = &mail;
        async move {
            let mut session = mail.login(SUPPORT).await;
            let exists = session.select(wire).await.unwrap().exists;
            session.logout().await.unwrap();
            exists
        }
    };
    loop_until(|| async {
        let counts = (
            count_in("Zg&AUI-oszenia").await,
            count_in("Za&AUI-atwione").await,
            count_in("Elementy wys&AUI-ane").await,
        );
        (counts == (0, 1, 1)).then_some(())
    })
    .await;
    server.stop().await;
}

/// chatwoot#3868: an agent answers from the mail client instead of the helpdesk. With the Sent
/// folder watched, that reply is ours: an outbound message in the conversation it answers
/// (`message.sent`), the customer's answer to it threads there too, a fresh mail to someone new
/// opens their conversation, and the copies of what the gateway itself sent (`sent_folder`) are
/// recognised as the messages they are. A mail from us to only ourselves is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_written_in_the_mail_client_are_our_messages_in_their_conversations() {
    let mail = MailServers::start().await;
    create_folders(mail.imap_port, SUPPORT, &["Sent"]).await;
    let put_in_sent = |text: String| {
        let mail = &mail;
        async move {
            let mut session = mail.login(SUPPORT).await;
            session.append("Sent", None, None, text.replace('\n', "\r\n")).await.unwrap();
            session.logout().await.unwrap();
        }
    };
    let config = mail.channel_with_imap("support", "folders = [\"INBOX\", \"Sent\"]\nsent_folder = \"Sent\"");
    let server = TestServer::start(&config).await;
    let of_type = |kind: &'static str| {
        let server = &server;
        async move { server.all_events().await.into_iter().filter(|e| e["type"] == kind).collect::<Vec<Value>>() }
    };
    mail.append(SUPPORT, &mail_text(ANN.0, "Broken lamp", "lamp@example.org", "", "It flickers.")).await;
    let first = first_received(&server).await["data"].clone();
    let cnv = first["conversation_id"].as_str().unwrap().to_owned();

    // The gateway answers (its copy lands in Sent and is recognised)...
    let (_, queued) = server.post("/v1/messages", json!({"conversation_id": cnv, "text": "We are on it."})).await;
    server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    // ...and an agent answers from the mail client.
    let outlook = crate::mail_servers::mail(
        "Example Support <support@example.com>",
        ANN.0,
        "RE: Broken lamp",
        "outlook-1@example.com",
        "In-Reply-To: <lamp@example.org>\n",
        "A new lamp is on its way.",
    );
    put_in_sent(outlook).await;
    let agent = loop_until(|| async {
        of_type("message.sent")
            .await
            .into_iter()
            .map(|e| e["data"].clone())
            .find(|m| m["provider"]["message_id"] == "outlook-1@example.com")
    })
    .await;
    assert_eq!(
        (agent["conversation_id"].as_str(), agent["stitch"]["reason"].as_str()),
        (Some(cnv.as_str()), Some("in_reply_to"))
    );
    assert_eq!((agent["direction"].as_str(), agent["status"].as_str()), (Some("outbound"), Some("sent")));
    assert_eq!(agent["from"]["address"], SUPPORT.0);
    assert_eq!(agent["sent_at"], "2026-11-23T10:00:00.000Z");
    assert_eq!(agent["in_reply_to"], first["id"], "the customer's mail it answers");

    // Ann answers the agent's mail: it threads by that mail's Message-ID.
    let answer =
        mail_text(ANN.0, "RE: Broken lamp", "ann-2@example.org", "In-Reply-To: <outlook-1@example.com>\n", "Thanks!");
    mail.append(SUPPORT, &answer).await;
    let second = loop_until(|| async { of_type("message.received").await.get(1).map(|e| e["data"].clone()) }).await;
    assert_eq!(
        (second["conversation_id"].as_str(), second["stitch"]["reason"].as_str()),
        (Some(cnv.as_str()), Some("in_reply_to"))
    );
    assert_eq!(second["in_reply_to"], agent["id"]);

    // A fresh mail from the client to someone new opens their conversation.
    put_in_sent(crate::mail_servers::mail(SUPPORT.0, BEA.0, "Your offer", "outlook-2@example.com", "", "Here it is."))
        .await;
    let fresh = loop_until(|| async {
        of_type("message.sent")
            .await
            .into_iter()
            .map(|e| e["data"].clone())
            .find(|m| m["provider"]["message_id"] == "outlook-2@example.com")
    })
    .await;
    assert_ne!(fresh["conversation_id"], cnv);
    let (_, conversation) =
        server.get(&format!("/v1/conversations/{}", fresh["conversation_id"].as_str().unwrap())).await;
    assert_eq!(conversation["peer_address"], BEA.0, "{conversation}");

    // Written without a Message-ID, and found twice (the same bytes under two UIDs, as after a
    // resync): one message, known by its content.
    let bare = format!(
        "From: {}\nTo: {}\nSubject: Follow-up\nDate: Mon, 23 Nov 2026 11:00:00 +0000\n\nAny news?\n",
        SUPPORT.0, BEA.0
    );
    put_in_sent(bare.clone()).await;
    put_in_sent(bare).await;
    loop_until(|| async {
        let sent = of_type("message.sent").await;
        sent.iter().any(|e| e["data"]["subject"] == "Follow-up").then_some(())
    })
    .await;
    // To only ourselves: refused, and listed.
    put_in_sent(crate::mail_servers::mail(SUPPORT.0, SUPPORT.0, "Test", "self@example.com", "", "test")).await;
    loop_until(|| async {
        let (_, listed) = server.get("/v1/channels/support/rejected").await;
        (listed["rejected"][0]["reason"] == "a mail from our own address to no one outside").then_some(())
    })
    .await;
    // Nothing else: the gateway's own copy in Sent made no message, Ann's two mails came in.
    assert_eq!(of_type("message.received").await.len(), 2);
    assert_eq!(of_type("message.sent").await.len(), 4, "ours through the API, and the three from the client");
    let (_, messages) = server.get(&format!("/v1/conversations/{cnv}/messages")).await;
    let directions: Vec<&str> =
        messages["messages"].as_array().unwrap().iter().map(|m| m["direction"].as_str().unwrap()).collect();
    assert_eq!(directions, ["inbound", "outbound", "outbound", "inbound"], "{messages}");
    let all = server.all_events().await;
    server.validate_contract(all.into_iter().map(|e| json!({"schema": "Event", "instance": e})).collect()).await;
    let dir = server.stop().await;
    // The copies in Sent of what the gateway sent are its messages: their sources are not kept.
    assert_eq!(blobs_kept_for_nothing(dir.path()), Vec::<String>::new());
}

/// Mailman's corpus of real bounces (flufl.bounce's test data: 117 mails from sendmail,
/// Exchange, GroupWise, Netscape, SMTP32, qmail, Yahoo, AOL, Postfix before DSNs, Exim, Dovecot
/// and more) read by us and by flufl.bounce, GNU Mailman's own bounce detector: where it finds
/// recipients failed, we read a delivery report that fails the same recipients, for good or
/// not as it says; where it finds none, we find none. Except where we read a bounce differently
/// on purpose, or not at all (`KNOWN_DIFFERENCES`, each with why) — and those must still differ,
/// so that the list is only ever as long as it needs to be.
#[test]
fn every_bounce_in_mailmans_corpus_reads_as_flufl_bounce_reads_it() {
    const NOT_FROM_A_MAILER_DAEMON: &str =
        "signed neither MAILER-DAEMON nor postmaster, with a sender's Return-Path: a customer writing";
    const ONLY_IN_PROSE: &str = "the recipient is named only in prose or in the returned original";
    const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
        ("bounce_02.txt", NOT_FROM_A_MAILER_DAEMON),
        ("microsoft_03.txt", NOT_FROM_A_MAILER_DAEMON),
        ("simple_15.txt", NOT_FROM_A_MAILER_DAEMON),
        ("simple_20.txt", NOT_FROM_A_MAILER_DAEMON),
        ("simple_22.txt", NOT_FROM_A_MAILER_DAEMON),
        ("simple_36.txt", NOT_FROM_A_MAILER_DAEMON),
        ("aol_01.txt", "names the recipient without its domain (an AOL screen name)"),
        ("bounce_03.txt", ONLY_IN_PROSE),
        ("llnl_01.txt", ONLY_IN_PROSE),
        ("simple_14.txt", ONLY_IN_PROSE),
        ("simple_16.txt", ONLY_IN_PROSE),
        ("simple_23.txt", ONLY_IN_PROSE),
        ("simple_26.txt", ONLY_IN_PROSE),
        ("simple_39.txt", ONLY_IN_PROSE),
        ("yahoo_12.txt", ONLY_IN_PROSE),
        ("yale_01.txt", ONLY_IN_PROSE),
        ("dsn_15.txt", "a postmaster forwarding someone else's DSN as an attachment"),
        ("sendmail_01.txt", "flufl.bounce also names the alias's target; we name the address our mail was sent to"),
    ];
    let dir = std::path::PathBuf::from(
        std::env::var("SB_FLUFL_BOUNCE_SAMPLES").expect("SB_FLUFL_BOUNCE_SAMPLES (tests/run.sh sets it)"),
    );
    let mut samples: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (tests/run.sh downloads flufl.bounce's test data)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    samples.sort();
    assert!(samples.len() >= 100, "{samples:?}");
    let args: Vec<&str> = samples.iter().map(|p| p.to_str().unwrap()).collect();
    let theirs: Value = serde_json::from_str(&python("flufl_bounce.py", &args, &Value::Null)).unwrap();
    let channel = support_channel_config();
    let (mut differences, mut agreed) = (Vec::new(), 0);
    for path in &samples {
        let name = path.file_name().unwrap().to_str().unwrap();
        let addresses = |key: &str| -> Vec<String> {
            theirs[name][key].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
        };
        let expected = match (addresses("permanent"), addresses("temporary")) {
            (permanent, _) if !permanent.is_empty() => Some((true, permanent)),
            (_, temporary) if !temporary.is_empty() => Some((false, temporary)),
            _ => None,
        };
        let raw = switchboard::channels::email::mime::to_raw_inbound(&channel, std::fs::read(path).unwrap());
        let ours = raw.delivery_report.as_ref().map(|r| {
            let mut recipients: Vec<String> = match r.failed_recipients.is_empty() {
                true => r.recipient.iter().cloned().collect(),
                false => r.failed_recipients.clone(),
            };
            recipients.iter_mut().for_each(|a| *a = a.to_lowercase());
            recipients.sort();
            (r.is_permanent_failure(), recipients)
        });
        let known = KNOWN_DIFFERENCES.iter().any(|(known, _)| *known == name);
        match (ours == expected, known) {
            (true, false) => agreed += 1,
            (false, true) => {}
            (true, true) => differences.push(format!("{name}: now read as flufl.bounce reads it; off the list")),
            (false, false) => differences.push(format!("{name}: ours {ours:?}, flufl.bounce {expected:?}")),
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert_eq!(agreed + KNOWN_DIFFERENCES.len(), samples.len());
}
