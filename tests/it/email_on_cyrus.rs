//! The email channel against Cyrus IMAP, a second real IMAP server: what `email.rs` shows with
//! Dovecot — a backlog and new mail in IDLE, each mail once across restarts, `after_import`, a
//! folder that gets a new UIDVALIDITY, a copy of each sent mail in the Sent folder — holds for
//! a server with its own UIDVALIDITY numbering, folder names, FETCH answers and IDLE (idled).

use std::time::Duration;

use serde_json::{json, Value};

use crate::cyrus::*;
use crate::email::{count, loop_until, nth_received, received, CommandHold};
use crate::harness::*;
use crate::mail_servers::*;

/// The folder "Zákazníci" ("customers") as IMAP names it (modified UTF-7, RFC 3501 5.1.3).
const CUSTOMERS: &str = "Z&AOE-kazn&AO0-ci";

/// A mail from `from` with a PDF attached (base64 over several lines), the way clients send it.
fn mail_with_attachment(from: &str, subject: &str, message_id: &str, attachment: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!(
        "From: {from}\nTo: support@example.com\nSubject: {subject}\nMessage-ID: <{message_id}>\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\nDobrý den, posílám fakturu.\n--b1\n\
         Content-Type: application/pdf; name=\"faktura.pdf\"\nContent-Disposition: attachment; filename=\"faktura.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--b1--\n",
        lines.join("\n")
    )
}

fn question(i: usize) -> String {
    mail(
        &format!("c{i}@example.org"),
        "support@example.com",
        &format!("Question {i}"),
        &format!("q{i}@example.org"),
        "",
        &format!("Body {i}"),
    )
}

/// The provider Message-IDs of what came in, each once, and how many came in.
async fn distinct_message_ids(server: &TestServer) -> (usize, usize) {
    let received = received(server).await;
    let mut ids: Vec<&str> = received.iter().map(|m| m["provider"]["message_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    (ids.len(), received.len())
}

/// A backlog imported across a restart in its middle, each mail once, its attachment byte for
/// byte; every imported mail moved to Archive (Cyrus offers MOVE); new mail through IDLE (idled);
/// mail taken away after import not imported again, nor anything after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_a_backlog_and_new_mail_come_in_once_across_restarts_and_are_moved() {
    let cyrus = Cyrus::start().await;
    create_folders(cyrus.imap_port, CYRUS_SUPPORT, &["Archive"]).await;
    let pdf: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    cyrus
        .append(CYRUS_SUPPORT, "INBOX", &mail_with_attachment("ann@example.org", "Faktura", "pdf@example.org", &pdf))
        .await;
    for i in 0..39 {
        cyrus.append(CYRUS_SUPPORT, "INBOX", &question(i)).await;
    }
    let config = cyrus.channel("support", "after_import = \"move:Archive\"", "");
    let server = TestServer::start(&config).await;
    loop_until(|| async { (count(&server).await >= 5).then_some(()) }).await;
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async { (count(&server).await >= 40).then_some(()) }).await;
    assert_eq!(distinct_message_ids(&server).await, (40, 40), "every mail exactly once");
    let invoice = received(&server).await.into_iter().find(|m| m["subject"] == "Faktura").unwrap();
    assert_eq!(invoice["text"].as_str().map(str::trim), Some("Dobrý den, posílám fakturu."));
    let attachment = &invoice["attachments"][0];
    assert_eq!((attachment["filename"].as_str(), attachment["size"].as_u64()), (Some("faktura.pdf"), Some(20_000)));
    // By id: its URL names the server as it was when the mail came in, before the restart.
    let url = format!("{}/v1/attachments/{}", server.base, attachment["id"].as_str().unwrap());
    let response = server.http.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().to_vec(), pdf);

    // Moved once imported: INBOX empties, Archive holds all 40, unread (fetching marks nothing).
    loop_until(|| async { cyrus.folder(CYRUS_SUPPORT, "INBOX").await.0.is_empty().then_some(()) }).await;
    let (archive, _) = cyrus.folder(CYRUS_SUPPORT, "Archive").await;
    assert_eq!(archive.len(), 40, "moved, not deleted");
    assert!(seen(&archive).iter().all(|read| !read), "{archive:?}");

    // New mail while the folder session waits in IDLE.
    cyrus.append(CYRUS_SUPPORT, "INBOX", &question(40)).await;
    loop_until(|| async { (count(&server).await >= 41).then_some(()) }).await;
    assert_eq!(received(&server).await[40]["subject"], "Question 40");
    // Fetched by the session that waited in IDLE, not by a new login.
    let sessions = cyrus.sessions(CYRUS_SUPPORT);
    let through_idle = sessions.iter().any(|s| {
        s.find(" IDLE\r\n").is_some_and(|idle| s.find("Subject: Question 40").is_some_and(|fetched| idle < fetched))
    });
    assert!(through_idle, "{sessions:?}");

    // Archive emptied by hand, a restart: nothing comes in again; a new mail does.
    let mut session = cyrus.login(CYRUS_SUPPORT).await;
    delete(&mut session, "Archive", "1:*").await;
    session.logout().await.unwrap();
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    cyrus.append(CYRUS_SUPPORT, "INBOX", &question(41)).await;
    loop_until(|| async { (count(&server).await >= 42).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(distinct_message_ids(&server).await, (42, 42));
    server.stop().await;
}

/// A watched folder with a non-ASCII name is recreated (restored from a backup, moved to
/// another server): Cyrus gives it a new UIDVALIDITY, and the same mails come back under new
/// UIDs. The folder is read again from its start, and only the mail not seen before comes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_a_folder_recreated_under_a_new_uidvalidity_brings_only_new_mail() {
    let cyrus = Cyrus::start().await;
    create_folders(cyrus.imap_port, CYRUS_SUPPORT, &[CUSTOMERS]).await;
    for i in 0..3 {
        cyrus.append(CYRUS_SUPPORT, CUSTOMERS, &question(i)).await;
    }
    let config = cyrus.channel("support", "folders = [\"Zákazníci\"]", "");
    let server = TestServer::start(&config).await;
    loop_until(|| async { (count(&server).await == 3).then_some(()) }).await;
    let dir = server.stop().await;

    let (_, old_validity) = cyrus.folder(CYRUS_SUPPORT, CUSTOMERS).await;
    let mut session = cyrus.login(CYRUS_SUPPORT).await;
    session.rename(CUSTOMERS, "Old").await.unwrap();
    session.create(CUSTOMERS).await.unwrap();
    session.logout().await.unwrap();
    for i in 0..4 {
        cyrus.append(CYRUS_SUPPORT, CUSTOMERS, &question(i)).await;
    }
    let (mails, new_validity) = cyrus.folder(CYRUS_SUPPORT, CUSTOMERS).await;
    assert_ne!(new_validity, old_validity);
    assert_eq!(mails.len(), 4);

    let server = TestServer::start_in(dir, &config).await;
    loop_until(|| async { (count(&server).await >= 4).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(distinct_message_ids(&server).await, (4, 4), "the three already imported are recognised");
    assert_eq!(received(&server).await[3]["subject"], "Question 3");
    server.stop().await;
}

/// A reply sent through SMTP leaves its copy in Cyrus's Sent folder, read, with the Bcc the
/// mail itself does not carry; the copy is not taken for inbound mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_a_copy_of_each_sent_mail_lands_in_the_sent_folder() {
    let (cyrus, mail) = (Cyrus::start().await, MailServers::start().await);
    create_folders(cyrus.imap_port, CYRUS_SUPPORT, &["Sent"]).await;
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{}\"\npassword = \"{}\"\n",
        mail.smtp_port, SUPPORT.0, SUPPORT.1
    );
    let server = TestServer::start(&cyrus.channel("support", "sent_folder = \"Sent\"", &smtp)).await;
    let body =
        json!({"channel": "support", "to": ANN.0, "bcc": [CARL.0], "subject": "Your order", "text": "Shipped today."});
    let (_, queued) = server.post("/v1/messages", body).await;
    let sent = server.wait_status(queued["id"].as_str().unwrap(), "sent").await;
    let header = sent["provider"]["message_id"].as_str().unwrap().to_owned();
    let copy: (Vec<String>, String) = loop_until(|| async {
        let (mails, _) = cyrus.folder(CYRUS_SUPPORT, "Sent").await;
        mails.into_iter().find_map(|(_, flags, bytes)| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.contains(&header).then_some((flags, text))
        })
    })
    .await;
    assert!(copy.0.iter().any(|f| f.contains("Seen")), "the copy is marked read: {:?}", copy.0);
    assert!(copy.1.starts_with("Bcc: carl@example.org\r\n"), "{}", copy.1);
    assert!(copy.1.contains("Shipped today."));
    let delivered: Value =
        loop_until(|| async { mail.inbox(ANN).await.pop().map(|(_, _, b)| json!(String::from_utf8_lossy(&b))) }).await;
    assert!(delivered.as_str().unwrap().contains(&header) && !delivered.as_str().unwrap().contains("Bcc:"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&server).await, 0, "only INBOX is watched");
    server.stop().await;
}

/// A mail over `max_mail_bytes` comes in from its header alone (Cyrus answers
/// `BODY.PEEK[HEADER]` and sizes its own way); `after_import = "seen"` marks only the mail
/// fetched whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_a_mail_over_max_mail_bytes_comes_in_from_its_header_and_stays_unread() {
    let cyrus = Cyrus::start().await;
    let big = mail(ANN.0, "support@example.com", "Huge scan", "huge@example.org", "", &"x".repeat(100_000));
    cyrus.append(CYRUS_SUPPORT, "INBOX", &big).await;
    cyrus.append(CYRUS_SUPPORT, "INBOX", &question(1)).await;
    let config = cyrus.channel("support", "after_import = \"seen\"", "").replacen(
        "[channels.imap]",
        "max_mail_bytes = 50000\n[channels.imap]",
        1,
    );
    let server = TestServer::start(&config).await;
    loop_until(|| async { (count(&server).await == 2).then_some(()) }).await;
    let received = received(&server).await;
    let (huge, small) = (&received[0], &received[1]);
    assert_eq!((huge["subject"].as_str(), huge["text"].as_str()), (Some("Huge scan"), None));
    let skipped = &huge["attachments_skipped"][0];
    assert!(skipped["size"].as_u64().unwrap() > 100_000, "{skipped}");
    assert!(skipped["reason"].as_str().unwrap().contains("max_mail_bytes"), "{skipped}");
    assert_eq!(small["text"].as_str().map(str::trim), Some("Body 1"));
    loop_until(|| async {
        let (inbox, _) = cyrus.folder(CYRUS_SUPPORT, "INBOX").await;
        (seen(&inbox) == [false, true]).then_some(())
    })
    .await;
    server.stop().await;
}

/// The races with another client of the mailbox, on Cyrus: while the gateway's FETCH is held,
/// an agent reads one mail, deletes another, and a new one arrives. Cyrus still sends the
/// deleted mail's body (it was there when the gateway searched) and tells of the new one in
/// answer to the FETCH, not again in IDLE (before this session's fix the new mail waited for
/// the next IDLE wake-up, as with Dovecot); every mail comes in once, without an error or a
/// reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cyrus_mail_deleted_read_and_arriving_while_a_fetch_runs_all_come_in_once() {
    let cyrus = Cyrus::start().await;
    let mut hold = CommandHold::start(cyrus.imap_port, "BODY.PEEK[])").await;
    for i in 0..3 {
        cyrus.append(CYRUS_SUPPORT, "INBOX", &question(i)).await;
    }
    let helpdesk = Receiver::start().await;
    let channel = cyrus
        .channel("support", "", "")
        .replace(&format!("port = {}\n", cyrus.imap_port), &format!("port = {}\n", hold.port));
    let server = TestServer::start(&format!("{channel}{}", webhook("h", &helpdesk, "[\"1s\"]"))).await;
    hold.holding().await;
    let mut agent = cyrus.login(CYRUS_SUPPORT).await;
    agent.select("INBOX").await.unwrap();
    let _: Vec<_> =
        futures_util::TryStreamExt::try_collect(agent.uid_store("1", "+FLAGS (\\Seen)").await.unwrap()).await.unwrap();
    delete(&mut agent, "INBOX", "2").await;
    agent.logout().await.unwrap();
    cyrus.append(CYRUS_SUPPORT, "INBOX", &question(3)).await;
    hold.release.notify_one();
    nth_received(&helpdesk, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(distinct_message_ids(&server).await, (4, 4), "each once, the deleted one too");
    assert_eq!(helpdesk.events_of("channel.error"), Vec::<Value>::new());
    assert_eq!(hold.connections(), 1, "the session stayed");
    server.stop().await;
}
