//! Plain-text bounces: what mail servers wrote before RFC 3464 reports, and many still write —
//! qmail's QSBMF, sendmail's, Exchange's and GroupWise's, Postfix's before DSNs, Yahoo's, GMX's
//! and 1&1's — read for who failed, why, and whether the server gave up.
//!
//! Pure functions over a parsed mail, used by `report::delivery_report`. Only a mailer daemon's
//! mail is read so (`report::from_mailer_daemon`): a customer who pastes a bounce is writing to
//! us. Checked against GNU Mailman's corpus of real bounces and its own detector
//! (`tests/it/email.rs`, `every_bounce_in_mailmans_corpus_reads_as_flufl_bounce_reads_it`).

use mail_parser::Message;

use super::report::{from_mailer_daemon, message_part, RecipientStatus};

/// Lines that end a plain-text bounce's account of its failures: what follows is the original
/// mail, its header, or a transcript of the SMTP session. Compared with a line's start, after
/// the dashes or bars that frame it, ignoring case: qmail's (QSBMF) two, GMX's and 1&1's,
/// Yahoo's, sendmail's and others'.
const ACCOUNT_ENDS: &[&str] = &[
    "below this line is a copy of the message",
    "enclosed are the original headers of the message",
    "the header of the original message is following",
    "original message follows",
    "transcript of session follows",
    "message header follows",
    "message body suppressed",
    "start of returned message",
    "returned mail",
    "message text follows",
];

/// Words with which a mailer daemon's plain text says a mail arrived: no failure to read.
const DELIVERED: &[&str] = &["was successfully delivered", "has been delivered", "delivery succeeded"];

/// Words with which a plain-text bounce says it gave up; they outweigh `STILL_TRYING` ("delayed
/// too long; I'm not going to try again").
const GIVEN_UP: &[&str] = &["not going to try again", "giving up", "given up", "gave up", "permanent", "too long"];

/// Words with which a plain-text bounce says it only warns: the mail may still arrive.
const STILL_TRYING: &[&str] = &[
    "not yet been delivered",
    "have not yet received",
    "will continue",
    "will keep trying",
    "still trying",
    "action: delayed",
    "message delayed",
    "delivery delayed",
    "has been delayed",
    "warning: message",
];

/// Labels a plain-text bounce writes before the address that failed (HotPOP's, and others'). A
/// label with a word of `FAILURE_WORDS` in it counts too ("Unknown user:", "Delivery failed 20
/// attempts:", "User's mailbox is full:", and without the colon "undeliverable to").
const RECIPIENT_LABELS: &[&str] = &["intended recipient:", "error-for:", "failed recipient:", "recipient:"];

/// Words of a label that says the address after it failed.
const FAILURE_WORDS: &[&str] =
    &["fail", "undeliver", "unknown", "invalid", "not reach", "could not", "unable", "full", "rejected"];

/// The failures a mailer daemon's bounce writes in plain text (it carries no RFC 3464 report
/// and no X-Failed-Recipients, or a report that names no one): in its first text part, before a
/// line that introduces the original (`ACCOUNT_ENDS`) — or all of it, if the mail shows itself a
/// bounce another way (the original in a part of its own, a bounce's subject); none in a text
/// that says the mail was delivered (`DELIVERED`). A line naming an address starts a recipient
/// (`failed_recipient`: QSBMF's `<ann@example.org>:` of qmail and Yahoo Mail, Postfix's before
/// it wrote DSNs, GMX's `"ann@example.org":`, sendmail's address alone, Exchange's and
/// GroupWise's `ann@example.org on <date>`, ...); the lines after it, up to the next, are why.
/// A sendmail-style `ann@example.org... User unknown` starts only the first (later, it is the
/// why of a recipient already named). `(expanded from: <address>)` names the address the mail
/// was sent to, which is the one reported.
///
/// Each is `failed` with the first RFC 3463 code in its text, else 5.0.0 — unless the text says
/// the server still tries (`STILL_TRYING`, not `GIVEN_UP`): then `delayed`, 4.0.0 unless it
/// gives a 5.x.x code. Only a mail `from_mailer_daemon` is read so.
pub(super) fn plain_text_failures(message: &Message<'_>, is_report: bool) -> Vec<RecipientStatus> {
    if !from_mailer_daemon(message) {
        return Vec::new();
    }
    let body = message.body_text(0).map(|t| t.replace("\r\n", "\n")).unwrap_or_default();
    let lines: Vec<&str> = body.lines().collect();
    let end = lines.iter().position(|line| {
        let line = line.trim().trim_start_matches(['-', '|', '=', '*', ' ']).to_ascii_lowercase();
        ACCOUNT_ENDS.iter().any(|marker| line.starts_with(marker))
    });
    // Without such a line, only a mail that shows itself a bounce another way (a report part
    // that named no one, too) is read whole: a postmaster writing to us in person is not
    // bouncing.
    if end.is_none() && !is_report && !encloses_original(message) && !bounce_subject(message) {
        return Vec::new();
    }
    let account = &lines[..end.unwrap_or(lines.len())];
    let text = account.join("\n").to_ascii_lowercase();
    if DELIVERED.iter().any(|p| text.contains(p)) {
        return Vec::new();
    }
    let mut failures: Vec<(String, Vec<&str>)> = Vec::new();
    for line in account.iter().map(|l| l.trim()) {
        let named = failed_recipient(line).or_else(|| failures.is_empty().then(|| first_failure(line)).flatten());
        match named {
            Some((address, why)) => failures.push((address.to_owned(), vec![why])),
            None => {
                if let Some((_, why)) = failures.last_mut() {
                    why.push(line);
                }
            }
        }
    }
    let still_trying = !GIVEN_UP.iter().any(|p| text.contains(p)) && STILL_TRYING.iter().any(|p| text.contains(p));
    failures
        .into_iter()
        .map(|(address, why)| {
            let diagnostic = why.into_iter().filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
            let address = expanded_from(&diagnostic).map_or(address, str::to_owned);
            let code = status_code_in(&diagnostic);
            let delayed = still_trying && !code.is_some_and(|c| c.starts_with('5'));
            let status = code.unwrap_or(if delayed { "4.0.0" } else { "5.0.0" });
            RecipientStatus {
                recipient: Some(address),
                action: Some(if delayed { "delayed" } else { "failed" }.into()),
                status: Some(status.to_owned()),
                diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
            }
        })
        .collect()
}

/// Whether the mail carries the original (or its header) in a part of its own.
fn encloses_original(message: &Message<'_>) -> bool {
    message_part(message, &["rfc822", "global", "rfc822-headers"]).is_some()
}

/// Words of a bounce's subject ("Undeliverable: …", "Returned mail: …", "Delivery Status
/// Notification (Failure)", "Mail delivery failed", "Warning: message … delayed 24 hours").
const BOUNCE_SUBJECT_WORDS: &[&str] =
    &["deliver", "delayed", "failure", "failed", "returned mail", "rejected", "bounce", "unzustellbar", "non remis"];

fn bounce_subject(message: &Message<'_>) -> bool {
    let subject = message.subject().unwrap_or("").to_lowercase();
    BOUNCE_SUBJECT_WORDS.iter().any(|word| subject.contains(word))
}

/// A plain-text bounce's line naming a failed recipient, and the rest of the line. The address
/// comes first — `<ann@example.org>`, `"ann@example.org"`, `"Ann" <ann@example.org>` or bare,
/// after a `>` quoting the line, or a label (`RECIPIENT_LABELS`) — followed by nothing, a colon
/// and why (QSBMF; bare: GMX), a `;` (`; Action: Delayed`), a parenthesis
/// (`(failed: Bad destination mailbox address)`) or `on <date>` (Exchange, GroupWise).
/// Exchange's X.400 form names it as `SMTP=ann@example.org;`.
fn failed_recipient(line: &str) -> Option<(&str, &str)> {
    let line = without_bullet(line);
    let lower = line.to_ascii_lowercase();
    // Exchange's `dda:SMTP=ann@example.org;` (X.400) and `Recipient: [SMTP:ann@example.org]`.
    let tagged = lower.find("smtp=").map(|at| at + 5).or_else(|| lower.find("[smtp:").map(|at| at + 6));
    if let Some(start) = tagged {
        let rest = &line[start..];
        let (address, why) = rest.split_at(rest.find([';', ']', ' ']).unwrap_or(rest.len()));
        return plausible_address(address).then_some((address, why.trim_start_matches([';', ']']).trim()));
    }
    if let Some((label, address)) = line.rsplit_once(": ").or_else(|| line.rsplit_once(" to ")) {
        let label = label.to_ascii_lowercase();
        let labelled = RECIPIENT_LABELS.iter().any(|l| label.trim_end() == l.trim_end_matches(':'))
            || FAILURE_WORDS.iter().any(|w| label.contains(w));
        let address = address.trim().trim_matches(['<', '>']);
        if labelled && plausible_address(address) {
            return Some((address, ""));
        }
    }
    let (address, rest) = leading_address(line)?;
    let why = if rest.is_empty() || rest.starts_with('(') || rest.starts_with("on ") {
        rest
    } else if let Some(why) = rest.strip_prefix(':').or_else(|| rest.strip_prefix(';')).or(rest.strip_prefix("- ")) {
        why.trim()
    } else {
        return None;
    };
    plausible_address(address).then_some((address, why))
}

/// `line` without what marks it as quoted or as an item of a list (`> `, `* `, `-- `, tabs).
fn without_bullet(line: &str) -> &str {
    line.trim_start_matches(['>', '*', '-', ' ', '\t'])
}

/// A sendmail-style failure, `ann@example.org... User unknown` or `<ann@example.org> ...
/// unknown host`: taken for a recipient only where none was named before (after one, such a
/// line is usually the remote server's answer quoted as why).
fn first_failure(line: &str) -> Option<(&str, &str)> {
    let (address, rest) = leading_address(without_bullet(line))?;
    let why = rest.strip_prefix("...")?.trim();
    plausible_address(address).then_some((address, why))
}

/// The address a line starts with (`<…>`, `"…"`, `"Name" <…>`, or up to a space, `:`, `;` or
/// `...`), and the rest of the line, trimmed.
fn leading_address(line: &str) -> Option<(&str, &str)> {
    if let Some(bracketed) = line.strip_prefix('[') {
        let (address, rest) = bracketed.split_once(']')?;
        return Some((address, rest.trim()));
    }
    if let Some(bracketed) = line.strip_prefix('<') {
        let (address, rest) = bracketed.split_once('>')?;
        return Some((address, rest.trim()));
    }
    if let Some(quoted) = line.strip_prefix('"') {
        let (quoted, rest) = quoted.split_once('"')?;
        let rest = rest.trim();
        // `"Ann" <ann@example.org>`: the address is in the brackets.
        if let Some(bracketed) = rest.strip_prefix('<') {
            let (address, rest) = bracketed.split_once('>')?;
            return Some((address, rest.trim()));
        }
        return Some((quoted, rest));
    }
    let end = line.find([' ', '\t', ':', ';']).unwrap_or(line.len());
    let end = line[..end].find("...").unwrap_or(end);
    Some((&line[..end], line[end..].trim()))
}

/// Whether `address` looks like a mail address a bounce reports (a dotted domain, no spaces).
fn plausible_address(address: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.ends_with('.') && !address.contains(char::is_whitespace)
    })
}

/// The address in sendmail's `(expanded from: <ann@example.org>)`: the one the mail was sent to.
fn expanded_from(why: &str) -> Option<&str> {
    let at = why.to_ascii_lowercase().find("(expanded from:")?;
    let rest = why[at + "(expanded from:".len()..].trim_start();
    let address = rest.split(')').next()?.trim().trim_matches(['<', '>']);
    plausible_address(address).then_some(address)
}

/// The first RFC 3463 status code (`5.1.1`, `4.2.2`) standing alone in `text`, as an SMTP
/// reply or qmail's `(#5.1.1)` writes it.
pub(super) fn status_code_in(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '#' | '[' | ']' | ',' | ';' | ':'))
        .map(|word| word.trim_end_matches('.'))
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plain_text_bounce_names_its_recipients_in_every_known_form() {
        for (line, found) in [
            ("<ann@example.org>:", Some(("ann@example.org", ""))),
            (
                "<ann@example.org>: Sorry, no mailbox here by that name.",
                Some(("ann@example.org", "Sorry, no mailbox here by that name.")),
            ),
            ("<ann@example.org>", Some(("ann@example.org", ""))),
            ("\"ann@example.org\":", Some(("ann@example.org", ""))),
            ("ann@example.org:", Some(("ann@example.org", ""))),
            ("ann@example.org", Some(("ann@example.org", ""))),
            ("ann@example.org: Domain does not exist", Some(("ann@example.org", "Domain does not exist"))),
            ("> ann@example.org", Some(("ann@example.org", ""))),
            ("\"Ann Smith\" <ann@example.org>", Some(("ann@example.org", ""))),
            (
                "<ann@example.org> (failed: Bad destination mailbox address)",
                Some(("ann@example.org", "(failed: Bad destination mailbox address)")),
            ),
            ("ann@example.org on Fri, 20 Jul 2001 11:08:59", Some(("ann@example.org", "on Fri, 20 Jul 2001 11:08:59"))),
            ("ann@example.org; Action: Delayed", Some(("ann@example.org", "Action: Delayed"))),
            ("c=US;a= ;p=ACME;dda:SMTP=ann@example.org; on Fri", Some(("ann@example.org", "on Fri"))),
            ("Undeliverable Address: ann@example.org", Some(("ann@example.org", ""))),
            ("Delivery failed 20 attempts: ann@example.org", Some(("ann@example.org", ""))),
            ("User's mailbox is full: <ann@example.org>", Some(("ann@example.org", ""))),
            ("Recipient: [SMTP:ann@example.org]", Some(("ann@example.org", ""))),
            ("   * ann@example.org", Some(("ann@example.org", ""))),
            ("-- ann@example.org", Some(("ann@example.org", ""))),
            ("* [ann@example.org]: 550 over quota", Some(("ann@example.org", "550 over quota"))),
            ("ann@example.org - no such user here.", Some(("ann@example.org", "no such user here."))),
            ("undeliverable  to ann@example.org", Some(("ann@example.org", ""))),
            ("Reason: Remote host said: 550 unknown user <ann@example.org>", None),
            ("Please reply to ann@example.org", None),
            ("Final-Recipient: rfc822; ann@example.org", None),
            ("<ann@example.org>... User unknown", None),
            ("ann@example.org ... unknown host", None),
            ("550 5.1.1 <ann@example.org>... User unknown", None),
            ("To: ann@example.org", None),
            ("Please contact <postmaster@example.org> for help", None),
            ("Hi. This is the qmail-send program at mail.example.net.", None),
            ("host: mx.example.org", None),
            ("<postmaster>:", None),
            ("ann@localhost", None),
            ("", None),
        ] {
            assert_eq!(super::failed_recipient(line), found, "{line}");
        }
    }

    /// sendmail's `address... why` names a recipient only where none was named before; its
    /// `(expanded from: …)` names the address the mail was sent to.
    #[test]
    fn a_sendmail_style_line_names_only_the_first_recipient() {
        assert_eq!(super::first_failure("ann@example.org ... unknown host"), Some(("ann@example.org", "unknown host")));
        assert_eq!(
            super::first_failure("<ann@example.org>... User unknown"),
            Some(("ann@example.org", "User unknown"))
        );
        assert_eq!(super::first_failure("Mailbox ... full"), None);
        assert_eq!(super::expanded_from("(expanded from: <Ann@Example.org>)"), Some("Ann@Example.org"));
        assert_eq!(super::expanded_from("User unknown"), None);
    }

    #[test]
    fn status_codes_are_found_where_servers_write_them() {
        for (text, code) in [
            ("Sorry, no mailbox here by that name. (#5.1.1)", Some("5.1.1")),
            ("Remote host said: 552 5.2.2 <full@example.org>: Mailbox full", Some("5.2.2")),
            ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", Some("5.1.10")),
            ("rejected by policy [4.7.1].", Some("4.7.1")),
            ("This mailbox is disabled (554.30).", None),
            ("192.0.2.25 does not like recipient.", None),
            ("client 1.2.3 and 10.5.1.1", None),
            ("", None),
        ] {
            assert_eq!(super::status_code_in(text), code, "{text}");
        }
    }
}
