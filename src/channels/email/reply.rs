//! `reply_text`: the new part of a mail, without quoted history or signature.
//!
//! Cuts at the first reply header (English, German, French, Spanish, Polish, Czech, Slovak,
//! Italian, Dutch, Portuguese and the Scandinavian languages, as Gmail, Apple Mail and
//! Thunderbird write them, and Outlook's `From: … Sent: …` block in those languages), a forwarded/original-message separator, or a run of `>` quoted lines; then drops
//! a `-- ` signature and "Sent from my phone" footers.
//! When nothing precedes a quote, the answer was written below it or between its lines
//! (bottom-posting, inline answers): then it is the lines that are not quoted.
//! An OpenPGP cleartext-signed text (RFC 4880 §7: inline PGP, as mutt or Enigmail write it) is
//! read as the text it signs: without its armor lines and signature block, its dash-escaped
//! lines restored.

/// Lines that open quoted history on their own.
const SEPARATORS: &[&str] = &[
    "-----original message-----",
    "-------- original message --------",
    "---------- forwarded message ---------",
    "-------- forwarded message --------",
    "begin forwarded message:",
    "-------- ursprüngliche nachricht --------",
    "-----ursprüngliche nachricht-----",
    "-------- message d'origine --------",
    "-----message d'origine-----",
    "-------- mensaje original --------",
    "-----mensaje original-----",
    "-------- oryginalna wiadomość --------",
    "-----oryginalna wiadomość-----",
    "-------- původní zpráva --------",
    "-----původní zpráva-----",
    "-------- pôvodná správa --------",
    "-------- messaggio originale --------",
    "-----messaggio originale-----",
    "-------- oorspronkelijk bericht --------",
    "-----oorspronkelijk bericht-----",
    "-------- mensagem original --------",
    "-----mensagem original-----",
    "-------- ursprungligt meddelande --------",
    "-----ursprungligt meddelande-----",
    "________________________________",
];

/// (opening, verb) of a one- or two-line reply header ending in a colon, lowercase:
/// "On … wrote:", "Am … schrieb …:", "Dne … napsal(a) …:".
const ATTRIBUTIONS: &[(&str, &str)] = &[
    ("on ", "wrote"),
    ("am ", "schrieb"),
    ("le ", "a écrit"),
    ("el ", "escribió"),
    ("w dniu ", "pisze"),
    ("w dniu ", "napisał"),
    ("dne ", "napsal"),
    ("dňa ", "napísal"),
    ("il ", "ha scritto"),
    ("op ", "schreef"),
    ("em ", "escreveu"),
    ("den ", "skrev"),
];

/// Verbs of reply headers that do not open with a fixed word: Gmail's in Polish, Czech and
/// Slovak open with the weekday ("pt., 27 lis 2026 o 14:03 Ann <ann@…> napisał(a):"), Apple
/// Mail's Polish with "Wiadomość napisana przez". Such a line counts when it also names an
/// address and a clock time and ends with a colon, which a customer's own sentence does not.
const ATTRIBUTION_VERBS: &[&str] = &[
    "wrote",
    "schrieb",
    "a écrit",
    "escribió",
    "napisał",
    "napisana przez",
    "pisze",
    "napsal",
    "napísal",
    "ha scritto",
    "schreef",
    "escreveu",
    "skrev",
];

/// Outlook's header block: a "From:" line followed within three lines by a "Sent:"/"Date:" line.
const OUTLOOK_FROM: &[&str] = &["from:", "von:", "de :", "de:", "od:", "da:", "van:", "från:", "fra:"];
const OUTLOOK_SENT: &[&str] = &[
    "sent:",
    "date:",
    "gesendet:",
    "datum:",
    "envoyé :",
    "envoyé:",
    "date :",
    "enviado:",
    "fecha:",
    "wysłano:",
    "wysłane:",
    "enviado el:",
    "data:",
    "odesláno:",
    "datum:",
    "odoslané:",
    "dátum:",
    "inviato:",
    "verzonden:",
    "enviado em:",
    "enviada em:",
    "skickat:",
    "sendt:",
];

const FOOTERS: &[&str] = &[
    "sent from my ",
    "get outlook for ",
    "gesendet von meinem ",
    "von meinem iphone gesendet",
    "envoyé de mon ",
    "enviado desde mi ",
    "wysłane z mojego ",
    "wysłano z ",
    "odesláno z ",
    "odoslané z ",
    "inviato da ",
    "inviato dal mio ",
    "verzonden vanaf mijn ",
    "verstuurd vanaf mijn ",
    "enviado do meu ",
    "enviado de meu ",
    "skickat från min ",
    "sendt fra min ",
];

fn is_attribution(line: &str, next: Option<&str>) -> bool {
    let l = line.trim().to_lowercase();
    let joined = match next {
        Some(n) => format!("{l} {}", n.trim().to_lowercase()),
        None => l.clone(),
    };
    let by_opening = ATTRIBUTIONS.iter().any(|(start, verb)| {
        l.starts_with(start)
            && ((l.contains(verb) && l.trim_end().ends_with(':'))
                || (!l.trim_end().ends_with(':') && joined.contains(verb) && joined.trim_end().ends_with(':')))
    });
    // The header on one line, or wrapped onto the next (Gmail wraps long ones).
    let by_content = |header: &str| {
        header.trim_end().ends_with(':')
            && header.contains('@')
            && has_clock_time(header)
            && ATTRIBUTION_VERBS.iter().any(|verb| header.contains(verb))
    };
    by_opening || by_content(&l) || (!l.trim_end().ends_with(':') && by_content(&joined))
}

/// Whether `s` has a time of day like "14:03" or "2:03".
fn has_clock_time(s: &str) -> bool {
    let b = s.as_bytes();
    (1..b.len().saturating_sub(2))
        .any(|i| b[i] == b':' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit())
}

fn is_outlook_block(lines: &[&str], i: usize) -> bool {
    let l = lines[i].trim().to_lowercase();
    let l = l.trim_start_matches('*');
    if !OUTLOOK_FROM.iter().any(|p| l.starts_with(p)) {
        return false;
    }
    lines[i + 1..].iter().take(3).any(|n| {
        let n = n.trim().to_lowercase();
        let n = n.trim_start_matches('*');
        OUTLOOK_SENT.iter().any(|p| n.starts_with(p))
    })
}

/// The new part of `text`: what comes before the quoted history; for a reply written below the
/// history or between its lines (bottom-posting, inline answers), the lines that are not
/// quoted.
pub fn reply_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let text = pgp_signed_text(&text).unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    // Whether the history opens with a quote (`>` lines, or "On … wrote:" above them), which is
    // how mail clients quote for answers below or between the lines; a separator or Outlook's
    // header block means the history is a copy below the answer.
    let mut quoting = false;
    for i in 0..lines.len() {
        let lower = lines[i].trim().to_lowercase();
        let quoted_run = lower.starts_with('>')
            && lines[i..].iter().take(2).all(|l| l.trim_start().starts_with('>') || l.trim().is_empty());
        let attribution = is_attribution(lines[i], lines.get(i + 1).copied());
        if SEPARATORS.iter().any(|s| lower.starts_with(s)) || attribution || is_outlook_block(&lines, i) || quoted_run {
            end = i;
            quoting = attribution || quoted_run;
            break;
        }
    }
    let above = without_signature(lines[..end].to_vec());
    if !above.is_empty() || !quoting {
        return above;
    }
    // Nothing above a quote: the answer is below it or between its quoted lines.
    let mut unquoted: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| !l.trim_start().starts_with('>') && !is_attribution(l, lines.get(i + 1).copied()))
        .filter(|(i, _)| *i == 0 || !is_attribution(lines[i - 1], Some(lines[*i])))
        .map(|(_, l)| *l)
        .collect();
    // A quote removed between two paragraphs leaves one blank line, not several.
    unquoted.dedup_by(|a, b| a.trim().is_empty() && b.trim().is_empty());
    without_signature(unquoted)
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

/// `body` without a `-- ` signature and trailing "Sent from my phone" footers, trimmed.
fn without_signature(mut body: Vec<&str>) -> String {
    if let Some(sig) = body.iter().rposition(|l| *l == "-- " || *l == "--") {
        body.truncate(sig);
    }
    while let Some(last) = body.last() {
        let l = last.trim().to_lowercase();
        if l.is_empty() || FOOTERS.iter().any(|f| l.starts_with(f)) {
            body.pop();
        } else {
            break;
        }
    }
    body.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::reply_text;

    /// A cleartext-signed text cut before its signature is no signed text: it is read as it
    /// is, armor line and all, rather than losing anything.
    #[test]
    fn a_pgp_signed_text_without_its_signature_is_read_as_it_is() {
        let cut = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHi,\n- - order 7\n";
        assert_eq!(reply_text(cut), "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHi,\n- - order 7");
        let whole = format!("\n{cut}-----BEGIN PGP SIGNATURE-----\n\niHUE\n-----END PGP SIGNATURE-----\n");
        assert_eq!(reply_text(&whole), "Hi,\n- order 7");
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
            ("FYI\n\n---------- Forwarded message ---------\nFrom: x", "FYI"),
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
            // Nothing new (an answer that is only an attachment): not our own text instead.
            ("On Mon, Support wrote:\n> Please send the invoice.", ""),
            ("From: Support <support@example.com>\nSent: Monday, November 23, 2026 10:00 AM\n\nPlease send it.", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(reply_text(input), expected, "{input:?}");
        }
    }
}
