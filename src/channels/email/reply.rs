//! `reply_text`: the new part of a mail, without quoted history or signature.
//!
//! The text is scanned, line by line, for the first thing that opens quoted history
//! (`Marker`):
//! - a reply header: "On … wrote:" and its forms in English, German, French, Spanish, Polish,
//!   Czech, Slovak, Italian, Dutch, Portuguese, the Scandinavian languages, Russian and
//!   Vietnamese, as Gmail, Apple Mail, Thunderbird, Android and the webmails write them; also
//!   wrapped over up to three lines, after the answer's last words on the same line, and
//!   without a verb (Yandex's and old Gmail's "date, name <address>:");
//! - a run of `>` quoted lines;
//! - a separator line ("-----Original Message-----" in those languages, Outlook's underscores)
//!   or a block of copied header fields (Outlook's "From: … Sent: …", "Date: … To: …");
//! - a forward's separator ("---------- Forwarded message ---------", "Begin forwarded
//!   message:").
//!
//! What comes before it is the answer. After a quote (a reply header followed by `>` lines, or
//! `>` lines alone) the customer may have written on below or between the quoted lines
//! (bottom-posting, inline answers, a greeting under the quote): those unquoted lines are the
//! answer too, up to a separator or header block. A forward is all new to us: the whole text
//! is the answer. Last, its signature is left out (`signature`).
//!
//! An OpenPGP cleartext-signed text (RFC 4880 §7: inline PGP, as mutt or Enigmail write it) is
//! read as the text it signs: without its armor lines and signature block, its dash-escaped
//! lines restored.
//!
//! Tested against the replies of Mailgun's talon (tests/it/reply_corpus.rs).

use super::phrases::*;
use super::signature::without_signature;
use crate::model::Party;

/// The longest line a reply header takes (a long name, a long address, Gmail's wrapped date).
const MAX_HEADER_BYTES: usize = 400;

/// What opens quoted history at a line.
#[derive(Debug, PartialEq)]
enum Marker<'a> {
    /// A reply header over `lines` lines, with the answer's last words before it on its first
    /// line ("Thanks! On Mon, … wrote:"), if any. Quoted lines may follow.
    Attribution { lines: usize, before: &'a str },
    /// Two or more `>` quoted lines.
    Quote,
    /// A separator line or a header block: a copy of the history below the answer.
    Copy,
    /// A forward's separator: a mail passed on to us.
    Forward,
}

/// The new part of `text`: what comes before the quoted history, and the customer's lines
/// below or between quoted lines.
pub fn reply_text(text: &str, sender: Option<&Party>) -> String {
    let text = text.replace("\r\n", "\n");
    let text = pgp_signed_text(&text).unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut answer: Vec<&str> = Vec::new();
    let (mut i, mut in_history) = (0, false);
    while i < lines.len() {
        // Below a quote, one quoted line is quote too (an answer between the quoted lines).
        let marker = match in_history && is_quoted(lines[i]) {
            true => Some(Marker::Quote),
            false => marker_at(&lines, i),
        };
        let Some(marker) = marker else {
            answer.push(lines[i]);
            i += 1;
            continue;
        };
        match marker {
            // A forward in the answer: all of it is new to us. Inside history it is history.
            Marker::Forward if !in_history => return text.trim().to_owned(),
            Marker::Forward | Marker::Copy => break,
            Marker::Attribution { lines: span, before } => {
                if !before.is_empty() {
                    answer.push(before);
                }
                i += span;
                // A reply header over unquoted history (Outlook-like): nothing below is ours.
                let next = lines[i..].iter().find(|l| !l.trim().is_empty());
                if !next.is_some_and(|l| is_quoted(l)) {
                    break;
                }
                i = after_quote(&lines, i);
            }
            Marker::Quote => i = after_quote(&lines, i),
        }
        in_history = true;
    }
    // A quote removed between two paragraphs leaves one blank line, not several.
    answer.dedup_by(|a, b| a.trim().is_empty() && b.trim().is_empty());
    without_signature(answer, sender)
}

/// What opens quoted history at `lines[i]`, if anything.
fn marker_at<'a>(lines: &[&'a str], i: usize) -> Option<Marker<'a>> {
    let lower = lines[i].trim().to_lowercase();
    if let Some(title) = dashed_title(&lower) {
        if FORWARD_TITLES.contains(&title) {
            return Some(Marker::Forward);
        }
        if SEPARATOR_TITLES.contains(&title) {
            return Some(Marker::Copy);
        }
        // Android's and some webmails' reply header between dashes: "---- Ann wrote ----".
        if ATTRIBUTION_VERBS.iter().any(|verb| title.contains(verb)) {
            return Some(Marker::Attribution { lines: 1, before: "" });
        }
    }
    if FORWARD_LINES.contains(&lower.as_str()) {
        return Some(Marker::Forward);
    }
    if lower.starts_with("________________________________") || is_header_block(lines, i) {
        return Some(Marker::Copy);
    }
    if is_quoted(lines[i]) && lines[i..].iter().take(2).all(|l| is_quoted(l) || l.trim().is_empty()) {
        return Some(Marker::Quote);
    }
    attribution_at(lines, i)
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// The words between the dashes of a line framed by two or more dashes on each side, when
/// it is one: "-----Original Message-----" → "original message".
fn dashed_title(lower: &str) -> Option<&str> {
    if !(lower.starts_with("--") && lower.ends_with("--")) {
        return None;
    }
    let title = lower.trim_matches(|c: char| c == '-' || c.is_whitespace());
    (!title.is_empty()).then_some(title)
}

/// The index after the quote that starts at or after `i`: past its `>` lines, the blank lines
/// between and after them, and the unquoted pieces of links that a client wrapped inside it.
fn after_quote(lines: &[&str], mut i: usize) -> usize {
    let mut last_quoted: Option<&str> = None;
    while i < lines.len() {
        let line = lines[i];
        if is_quoted(line) {
            last_quoted = Some(line);
        } else if !line.trim().is_empty() && !is_wrapped_link(last_quoted, line, lines.get(i + 1).copied()) {
            break;
        }
        i += 1;
    }
    i
}

/// Whether `line`, unquoted between quoted lines, is a piece of a link the client wrapped out
/// of the quote: "(http://…) >" on its own, or the rest of a parenthesised link the quoted line
/// above opened.
fn is_wrapped_link(quoted_above: Option<&str>, line: &str, below: Option<&str>) -> bool {
    let Some(above) = quoted_above else { return false };
    let l = line.trim().trim_end_matches('>').trim_end();
    let link_alone = (l.starts_with("(http") && l.ends_with(')')) || (l.starts_with("<http") && l.ends_with('>'));
    let rest_of_link =
        above.matches('(').count() > above.matches(')').count() && l.ends_with(')') && !l.contains(char::is_whitespace);
    (link_alone || rest_of_link) && below.is_none_or(|b| is_quoted(b) || b.trim().is_empty())
}

/// A block of copied header fields at `lines[i]`: a "From:" or "Sent:"/"Date:" field with
/// another field within the three lines below it (Outlook's "From: … Sent: … To: …", a
/// webmail's "Date: … Subject: … From: …"), bold or not, naming an address or a date (a digit):
/// a customer's "Date: Friday / To: be confirmed" is no header.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let field = |line: &str| -> Option<bool> {
        let l = line.trim().trim_start_matches('*').to_lowercase();
        let named = |fields: &[&str]| fields.iter().any(|f| l.starts_with(f));
        if named(FROM_FIELDS) || named(SENT_FIELDS) {
            Some(true)
        } else if named(OTHER_FIELDS) {
            Some(false)
        } else {
            None
        }
    };
    let block = &lines[i..(i + 4).min(lines.len())];
    field(lines[i]) == Some(true)
        && block[1..].iter().any(|l| field(l).is_some())
        && block.iter().any(|l| l.contains(|c: char| c == '@' || c.is_ascii_digit()))
}

/// The reply header at `lines[i]`, over one line or wrapped onto two or three.
fn attribution_at<'a>(lines: &[&'a str], i: usize) -> Option<Marker<'a>> {
    let first = lines[i];
    if is_quoted(first) || first.trim().is_empty() {
        return None;
    }
    for span in 1..=3.min(lines.len() - i) {
        // Only a line that already reads as a header's beginning continues on the next; the
        // continuation is neither blank nor quoted.
        if span > 1
            && (!begins_header(first) || lines[i + span - 1].trim().is_empty() || is_quoted(lines[i + span - 1]))
        {
            break;
        }
        let rest: Vec<&str> = lines[i + 1..i + span].iter().map(|l| l.trim()).collect();
        // The answer's last words, then the header: "Thanks On Mon, … wrote:".
        if let Some(at) = embedded_opening(first, &rest) {
            let before = first[..at].trim_end().trim_end_matches('-').trim_end();
            return Some(Marker::Attribution { lines: span, before });
        }
        let joined = std::iter::once(first.trim()).chain(rest).collect::<Vec<_>>().join(" ").to_lowercase();
        if joined.len() > span * MAX_HEADER_BYTES {
            break;
        }
        if is_header(&joined) {
            return Some(Marker::Attribution { lines: span, before: "" });
        }
        // Old Gmail's "2011/4/7 Ann <ann@example.org>", no colon, over a quote.
        let next = lines[i + span..].iter().find(|l| !l.trim().is_empty());
        if starts_with_date(&joined)
            && joined.contains('@')
            && joined.ends_with('>')
            && next.is_some_and(|l| is_quoted(l))
        {
            return Some(Marker::Attribution { lines: span, before: "" });
        }
    }
    None
}

/// Whether `lower` (a header, lowercase, its lines joined) reads as a reply header.
fn is_header(lower: &str) -> bool {
    let Some(before_colon) = lower.trim_end().strip_suffix(':').or_else(|| lower.trim_end().strip_suffix('：')) else {
        return false;
    };
    let by_opening =
        ATTRIBUTIONS.iter().any(|(opening, verb)| lower.starts_with(opening) && before_colon.contains(verb));
    // "On … sent:": "sent" is an everyday word, so the header must name an address.
    let sent = lower.starts_with("on ") && before_colon.trim_end().ends_with("sent") && lower.contains('@');
    // A header that does not open with a fixed word names an address, and a clock time or
    // its verb last ("… <ann@example.org> wrote:"), which a customer's own sentence does not.
    let verb_last =
        ATTRIBUTION_VERBS.iter().any(|verb| before_colon.trim_end().trim_end_matches("(a)").trim_end().ends_with(verb));
    let by_content = lower.contains('@')
        && ATTRIBUTION_VERBS.iter().any(|verb| before_colon.contains(verb))
        && (has_clock_time(lower) || verb_last);
    // Without a verb: "26.06.2014, 14:41, "Ann" <ann@example.org>:" (Yandex, mail.ru, Gmail).
    let verbless = before_colon.trim_end().ends_with('>') && lower.contains('@') && has_clock_time(lower);
    by_opening || sent || by_content || verbless
}

/// Whether `line` reads as the beginning of a reply header that a client wrapped: it opens with
/// a header's fixed word or a date, or names a clock time or a header's verb.
fn begins_header(line: &str) -> bool {
    let l = line.trim().to_lowercase();
    ATTRIBUTIONS.iter().any(|(opening, _)| l.starts_with(opening))
        || starts_with_date(&l)
        || has_clock_time(&l)
        || ATTRIBUTION_VERBS.iter().any(|verb| l.contains(verb))
}

/// Where in `first` (a line that does not open with a header's fixed word) a reply header
/// begins after the answer's last words, the header running on over `rest`.
fn embedded_opening(first: &str, rest: &[&str]) -> Option<usize> {
    let lower_first = first.trim().to_lowercase();
    if ATTRIBUTIONS.iter().any(|(opening, _)| lower_first.starts_with(opening)) {
        return None;
    }
    // A header is short: only its last MAX_HEADER_BYTES can begin one, which keeps a long line
    // (a paragraph, or a hostile megabyte of "On") from costing its length squared.
    let from = first.len().saturating_sub(MAX_HEADER_BYTES).max(1);
    first.char_indices().filter(|(at, _)| *at >= from).find_map(|(at, _)| {
        let preceded = first[..at].ends_with(|c: char| c.is_whitespace() || c == '-');
        let tail = &first[at..];
        let opens = ATTRIBUTIONS
            .iter()
            .any(|(opening, _)| tail.get(..opening.len()).is_some_and(|t| t.eq_ignore_ascii_case(opening)));
        // Mail clients write the header's first word capitalised ("On", "Am"); within a
        // sentence it is lowercase, and no header.
        if !preceded || !opens || tail.starts_with(char::is_lowercase) {
            return None;
        }
        let header =
            std::iter::once(tail.trim()).chain(rest.iter().copied()).collect::<Vec<_>>().join(" ").to_lowercase();
        let by_opening =
            ATTRIBUTIONS.iter().any(|(opening, verb)| header.starts_with(opening) && header.contains(verb));
        (by_opening && header.trim_end().ends_with(':') && (header.contains('@') || has_clock_time(&header)))
            .then_some(at)
    })
}

/// Whether `s` opens with a numeric date: "2011/4/7", "26.06.2014", "2014-10-17".
fn starts_with_date(s: &str) -> bool {
    let date: String = s.chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '/' | '-')).collect();
    date.chars().filter(char::is_ascii_digit).count() >= 4 && date.chars().any(|c| matches!(c, '.' | '/' | '-'))
}

/// Whether `s` has a time of day like "14:03" or "2:03".
fn has_clock_time(s: &str) -> bool {
    let b = s.as_bytes();
    (1..b.len().saturating_sub(2))
        .any(|i| b[i] == b':' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit())
}

/// The text an OpenPGP cleartext signature framework signs (RFC 4880 §7), when `text` is one:
/// what follows the `-----BEGIN PGP SIGNED MESSAGE-----` line and its armor headers (`Hash:`)
/// up to the `-----BEGIN PGP SIGNATURE-----` line, with the dash-escaping (`- ` before a line
/// that begins with `-`) taken off. (The signature is checked by `openpgp`.)
fn pgp_signed_text(text: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    if lines.next()?.trim_end() != "-----BEGIN PGP SIGNED MESSAGE-----" {
        return None;
    }
    // The armor headers end at the first empty line.
    let lines = lines.skip_while(|l| !l.trim().is_empty()).skip(1);
    let mut signed = Vec::new();
    for line in lines {
        if line.trim_end() == "-----BEGIN PGP SIGNATURE-----" {
            return Some(signed.join("\n"));
        }
        signed.push(line.strip_prefix("- ").unwrap_or(line));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::reply_text;
    use crate::model::Party;

    /// `reply_text` only ever leaves out: each line it gives is a line of the text, or the
    /// start of one (the answer before a header on the same line). Over texts made of reply
    /// headers, quotes, separators, header fields, signature lines, multibyte words and blank
    /// lines in every order (the same sequence every run), it neither panics nor invents.
    #[test]
    fn reply_text_only_leaves_out_whatever_the_lines() {
        const POOL: &[&str] = &[
            "",
            "Thanks!",
            "Ďakujem, žluťoučký kůň ✓",
            "> quoted",
            ">",
            ">> older",
            "On Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:",
            "On Mon, 23 Nov 2026 at 10:00, Support <",
            "support@example.com> wrote:",
            "Thanks On Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:",
            "Dňa 23. 11. 2026 o 10:00 Support napísal(a):",
            "26.06.2014, 14:41, \"Support\" <support@example.com>:",
            "2011/4/7 Support <support@example.com>",
            "-----Original Message-----",
            "---------- Forwarded message ---------",
            "---- Support wrote ----",
            "From: Support <support@example.com>",
            "Sent: Monday, November 23, 2026 10:00 AM",
            "Date: Wed, 16 May 2012 00:15:02 -0600",
            "To: Ann",
            " (http://example.com/c/abc) >",
            "-- ",
            "Sent from my iPhone",
            "________________________________",
            "Best regards,",
            "Ann Smith",
            "-Lev.",
            "Head of Purchasing",
            "+1 555 0100",
            "Can you check?",
            "P.S. the parcel was wet",
        ];
        let ann = Party { address: "ann@example.org".into(), name: Some("Ann Smith".into()) };
        let mut seed = 0x5EED_u64;
        for _ in 0..3000 {
            let n = (super::super::tests::xorshift(&mut seed) % 12) as usize;
            let lines: Vec<&str> =
                (0..n).map(|_| POOL[(super::super::tests::xorshift(&mut seed) % POOL.len() as u64) as usize]).collect();
            let text = lines.join("\n");
            let reply = reply_text(&text, Some(&ann));
            for line in reply.lines() {
                assert!(
                    lines.iter().any(|l| l.trim_start().starts_with(line.trim_start())),
                    "{line:?} from {text:?} → {reply:?}"
                );
            }
        }
    }

    /// A cleartext-signed text cut before its signature is no signed text: it is read as it
    /// is, armor line and all, rather than losing anything.
    #[test]
    fn a_pgp_signed_text_without_its_signature_is_read_as_it_is() {
        let cut = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHi,\n- - order 7\n";
        assert_eq!(reply_text(cut, None), "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHi,\n- - order 7");
        let whole = format!("\n{cut}-----BEGIN PGP SIGNATURE-----\n\niHUE\n-----END PGP SIGNATURE-----\n");
        assert_eq!(reply_text(&whole, None), "Hi,\n- order 7");
    }

    #[test]
    fn cuts_quoted_history_in_every_language() {
        let cases = [
            ("Thanks!\n\nOn Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:\n> Hello", "Thanks!"),
            ("Thanks!\n\nOn Mon, 23 Nov 2026 at 10:00, Support <support@example.com>\nwrote:\n> Hello", "Thanks!"),
            ("Danke!\n\nAm 23.11.2026 um 10:00 schrieb Support <support@example.com>:\n> Hallo", "Danke!"),
            ("Merci !\n\nLe lun. 23 nov. 2026 à 10:00, Support <support@example.com> a écrit :\n> Bonjour", "Merci !"),
            ("¡Gracias!\n\nEl lun, 23 nov 2026 a las 10:00, Support (<support@example.com>) escribió:\n> Hola", "¡Gracias!"),
            ("Dziękuję!\n\nW dniu 23.11.2026 o 10:00, Support pisze:\n> Dzień dobry", "Dziękuję!"),
            ("Dziękuję!\n\nW dniu pon., 23 lis 2026 o 10:00 Support <support@example.com> napisał(a):\n> x", "Dziękuję!"),
            ("Děkuji!\n\nDne 23. 11. 2026 10:00 napsal(a) Support <support@example.com>:\n> Dobrý den", "Děkuji!"),
            ("Ďakujem!\n\nDňa 23. 11. 2026 o 10:00 Support napísal(a):\n> Dobrý deň", "Ďakujem!"),
            ("Thanks\n\nFrom: Support <support@example.com>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Ann\nSubject: Re: x\n\nHello", "Thanks"),
            ("Danke\n\nVon: Support <support@example.com>\nGesendet: Montag, 23. November 2026 10:00\nAn: Ann", "Danke"),
            ("Merci\n\nDe : Support <support@example.com>\nEnvoyé : lundi 23 novembre 2026 10:00\nÀ : Ann", "Merci"),
            ("Díky\n\nOd: Support <support@example.com>\nOdesláno: pondělí 23. listopadu 2026 10:00", "Díky"),
            ("See below\n\n-----Original Message-----\nFrom: x", "See below"),
            // A forward is all new to us; inside history it is history.
            ("FYI\n\n---------- Forwarded message ---------\nFrom: x", "FYI\n\n---------- Forwarded message ---------\nFrom: x"),
            ("Blah\n\n-----Original Message-----\n\nFYI\n\n---------- Forwarded message ---------\nFrom: x", "Blah"),
            ("New text\n> old\n> older", "New text"),
            ("Answer\n\n-- \nAnn Smith\nACME", "Answer"),
            ("Answer\n\nSent from my iPhone", "Answer"),
            ("Antwort\n\nVon meinem iPhone gesendet\n\nAm 23.11.2026 um 10:00 schrieb Support:\n> x", "Antwort"),
            ("Line one\nLine two", "Line one\nLine two"),
            ("I wrote: this is fine\nOn the other hand", "I wrote: this is fine\nOn the other hand"),
            // Written below the history, or between its lines.
            ("On Mon, 23 Nov 2026, Support wrote:\n> Does Friday suit you?\n\nYes, Friday is fine.\n\n-- \nAnn", "Yes, Friday is fine."),
            ("Am 23.11.2026 um 10:00 schrieb Support\n<support@example.com>:\n> Passt Freitag?\nJa.\n> Und um 10 Uhr?\nAuch.", "Ja.\nAuch."),
            // Gmail's own attributions, which open with the weekday in Polish, Czech and Slovak.
            ("Dziękuję!\n\npt., 27 lis 2026 o 14:03 Example Support <support@example.com> napisał(a):\n\n> x", "Dziękuję!"),
            ("Děkuji!\n\npá 27. 11. 2026 v 14:03 odesílatel Example Support <support@example.com> napsal:\n\n> x", "Děkuji!"),
            ("Ďakujem!\n\npi 27. 11. 2026 o 14:03 Example Support <support@example.com> napísal(a):\n\n> x", "Ďakujem!"),
            ("Danke!\n\nAm Fr., 27. Nov. 2026 um 14:03 Uhr schrieb Example Support <\nsupport@example.com>:\n\n> x", "Danke!"),
            // Apple Mail in Polish; Outlook's Polish and Spanish header blocks.
            ("Dzięki\n\nWiadomość napisana przez Example Support <support@example.com> w dniu 27.11.2026, o godz. 14:03:\n\n> x", "Dzięki"),
            ("Dzięki\n\nOd: Example Support <support@example.com>\nWysłane: piątek, 27 listopada 2026 14:03\nDo: Ann", "Dzięki"),
            ("Gracias\n\nDe: Example Support <support@example.com>\nEnviado el: viernes, 27 de noviembre de 2026 14:03\nPara: Ann", "Gracias"),
            // Italian, Dutch, Portuguese and Scandinavian: Gmail, Apple Mail, Thunderbird, Outlook.
            ("Grazie!\n\nIl giorno lun 23 nov 2026 alle ore 10:00 Example Support <support@example.com> ha scritto:\n\n> x", "Grazie!"),
            ("Grazie!\n\nIl 23/11/2026 10:00, Example Support ha scritto:\n> x", "Grazie!"),
            ("Grazie\n\nInviato da iPhone\n\nIl giorno 23 nov 2026, alle ore 10:00, Example Support <support@example.com> ha scritto:\n\n> x", "Grazie"),
            ("Grazie\n\nDa: Example Support <support@example.com>\nInviato: lunedì 23 novembre 2026 10:00\nA: Anna", "Grazie"),
            ("Bedankt!\n\nOp ma 23 nov 2026 om 10:00 schreef Example Support <support@example.com>:\n\n> x", "Bedankt!"),
            ("Bedankt\n\nVan: Example Support <support@example.com>\nVerzonden: maandag 23 november 2026 10:00\nAan: Anna", "Bedankt"),
            ("Bedankt\n\nVerzonden vanaf mijn iPhone", "Bedankt"),
            ("Obrigado!\n\nEm seg., 23 de nov. de 2026 às 10:00, Example Support <support@example.com> escreveu:\n\n> x", "Obrigado!"),
            ("Obrigado\n\nDe: Example Support <support@example.com>\nEnviado em: segunda-feira, 23 de novembro de 2026 10:00\nPara: Ana", "Obrigado"),
            ("Obrigado\n\nEnviado do meu iPhone", "Obrigado"),
            ("Tack!\n\nDen mån 23 nov. 2026 kl 10:00 skrev Example Support <support@example.com>:\n\n> x", "Tack!"),
            ("Takk!\n\nman. 23. nov. 2026 kl. 10:00 skrev Example Support <support@example.com>:\n\n> x", "Takk!"),
            ("Tack\n\nFrån: Example Support <support@example.com>\nSkickat: den 23 november 2026 10:00\nTill: Anna", "Tack"),
            ("Vedi sotto\n\n-----Messaggio originale-----\nDa: x", "Vedi sotto"),
            // A customer quoting someone in her own words is not history.
            ("My neighbour jan@example.org wrote: the parcel is at his door.\nPlease check.", "My neighbour jan@example.org wrote: the parcel is at his door.\nPlease check."),
            // Below the quote and between quoted lines: the customer's too.
            ("Thanks!\n\nOn Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:\n> Hello\n> x\n\nAnn", "Thanks!\n\nAnn"),
            ("Yes.\n\n> Friday?\n> Or Monday?\nFriday.\n> 10:00?\nBetter 11:00.", "Yes.\n\nFriday.\nBetter 11:00."),
            // But not history under a reply header that quotes nothing.
            ("Thanks\n\nOn Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:\n\nHello\n\n> x\nmore", "Thanks"),
            // The answer's last words on the header's line; a lowercase "on" is the customer's.
            ("Thanks On Mon, 23 Nov 2026 at 10:00, Support <support@example.com> wrote:\n> x", "Thanks"),
            ("I wrote on Monday at 10:00 to bob@example.org: no answer.", "I wrote on Monday at 10:00 to bob@example.org: no answer."),
            // A line above a header is not the header's beginning; a customer's "Date:" is no block.
            ("Lorem\nDen 14 september, 2015 02:23:18, Ann (ann@example.org) skrev:\n\nVeniam", "Lorem"),
            ("Date: Friday\nTo: be confirmed\nSee you", "Date: Friday\nTo: be confirmed\nSee you"),
            // Yandex's and old Gmail's headers have no verb.
            ("Ok\n\n26.06.2014, 14:41, \"Support\" <support@example.com>:\nHello", "Ok"),
            ("Ok\n2011/4/7 Support <support@example.com>\n\n> Hello", "Ok"),
            ("Ok\n\n----- Original Message -----\nFrom: x", "Ok"),
            ("Ok\n\n---- Support wrote ----\n\n> x", "Ok"),
            // Nothing new (an answer that is only an attachment): not our own text instead.
            ("On Mon, Support wrote:\n> Please send the invoice.", ""),
            ("From: Support <support@example.com>\nSent: Monday, November 23, 2026 10:00 AM\n\nPlease send it.", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(reply_text(input, None), expected, "{input:?}");
        }
    }
}
