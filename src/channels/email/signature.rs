//! Where a customer's signature begins, so that `reply_text` can leave it out.
//!
//! A mail's last lines are read the way Mailgun's talon reads them (its `bruteforce` signature
//! extractor, which Mailgun's `stripped-text` comes from), with two of its classifier's cues
//! and guards of our own:
//! - The signature is among the last eleven lines with text, never the first of them, and made
//!   of short lines: a long line above ends it, and so does a second line led by a dash (that is
//!   a list).
//! - In those lines it begins at the first sign-off ("Thanks", "Best regards", "Mit
//!   freundlichen Grüßen", "S pozdravem", … in the languages of `phrases::SIGN_OFFS`), the
//!   first dashes ("--", "---------", "-Lev."), or (talon's classifier's cue) the first line
//!   that is the sender's name with only business-card lines below it (a title, a company, a
//!   phone number, an address, a link).
//! - Before all of that, a "Sent from my phone" footer among the last lines is taken off with
//!   what follows it, and so is a `-- ` delimiter anywhere but on the first line.
//! - Then a company's closing boilerplate, which talon keeps (`drop_disclaimer`): a disclaimer
//!   ("CONFIDENTIALITY NOTICE: This e-mail …", "Diese E-Mail enthält vertrauliche …"), the
//!   imprint German law puts on every business mail ("Geschäftsführer: …", "Registergericht:
//!   …"), a request not to print the mail. These are long, so the signature's eleven short
//!   lines would never reach above them to the sign-off.
//!
//! Our guards: a question or a "P.S." below a would-be signature is the customer's text, so
//! nothing from there on is a signature; and a reply that would be left with only its greeting
//! ("Hello,") keeps its last words.

use super::phrases::{
    COMPANY_REGISTRY, DISCLAIMER_OPENINGS, DISCLAIMER_TITLES, DISCLAIMER_WORDS, FOOTERS, PRINT_NOTES, SIGN_OFFS,
};
use crate::model::Party;

/// The most lines with text a signature takes (talon's `SIGNATURE_MAX_LINES`).
const MAX_LINES: usize = 11;

/// A longer line is the customer's text, not a signature's (talon's `TOO_LONG_SIGNATURE_LINE`).
const MAX_LINE_CHARS: usize = 60;

/// The most lines with text a company's closing boilerplate takes: a disclaimer in two
/// languages, or an imprint with its board and registry.
const MAX_BOILERPLATE_LINES: usize = 30;

/// Opening words of a disclaimer count only over this much text: "This message is
/// confidential, please keep it to yourself." is the customer's.
const MIN_DISCLAIMER_CHARS: usize = 120;

/// Blocks of closing boilerplate taken off one after the other (a disclaimer, the imprint
/// above it, a print note below): a bound for hostile mail of a thousand of them.
const MAX_BOILERPLATE_BLOCKS: usize = 4;

/// How much of each of the last lines the boilerplate phrases are looked for in.
const MAX_READ_CHARS: usize = 2000;

/// A line of an imprint is short ("Registergericht: Amtsgericht Charlottenburg, HRB 12345").
const MAX_REGISTRY_LINE_CHARS: usize = 100;

/// `body` without its signature and trailing footers, trimmed. `sender` is who wrote it.
pub(super) fn without_signature(mut body: Vec<&str>, sender: Option<&Party>) -> String {
    drop_footers(&mut body);
    let first = body.iter().position(|l| !l.trim().is_empty());
    if let Some(delimiter) = body.iter().rposition(|l| *l == "-- " || *l == "--") {
        if Some(delimiter) > first {
            body.truncate(delimiter);
            drop_footers(&mut body);
        }
    }
    drop_disclaimer(&mut body);
    if let Some(start) = signature_start(&body, sender) {
        body.truncate(start);
    }
    body.join("\n").trim().to_owned()
}

/// Takes a "Sent from my iPhone" footer among the last lines off `body`, with what follows it
/// (its translation, a carrier's note), and trailing blank lines. A footer is a few words; on
/// the first line it is one only when nothing follows ("Sent from my phone, the parcel is
/// broken" opens a customer's text).
fn drop_footers(body: &mut Vec<&str>) {
    let with_text: Vec<usize> = (0..body.len()).filter(|&i| !body[i].trim().is_empty()).collect();
    let last_lines = &with_text[with_text.len().saturating_sub(MAX_LINES)..];
    let is_footer = |i: usize| {
        let lower = body[i].trim().to_lowercase();
        FOOTERS.iter().any(|footer| lower.starts_with(footer))
            && lower.split_whitespace().count() <= 10
            && (Some(&i) != with_text.first() || with_text.len() == 1)
    };
    if let Some(&footer) = last_lines.iter().find(|&&i| is_footer(i)) {
        body.truncate(footer);
    }
    while body.last().is_some_and(|line| line.trim().is_empty()) {
        body.pop();
    }
}

/// Takes a company's closing boilerplate off `body`: from the first of its last lines that opens
/// a disclaimer (a title or opening words, with a disclaimer's words below), an imprint (a
/// registry line, with only short lines below) or a request not to print, to the end, and the
/// separator line above it. Never the first line with text, nothing below that asks a question
/// (that is the customer's), and only when more than a greeting is left. Again while there is
/// one, a few times at most: an imprint above a disclaimer's long lines is one only once the
/// disclaimer is gone.
fn drop_disclaimer(body: &mut Vec<&str>) {
    for _ in 0..MAX_BOILERPLATE_BLOCKS {
        match without_boilerplate(body) {
            Some(kept) => *body = kept,
            None => return,
        }
    }
}

/// `body` without its last block of closing boilerplate (`drop_disclaimer`), if it has one.
fn without_boilerplate<'a>(body: &[&'a str]) -> Option<Vec<&'a str>> {
    let with_text: Vec<usize> = (0..body.len()).filter(|&i| !body[i].trim().is_empty()).collect();
    let candidates = with_text.get(1..).unwrap_or_default();
    let candidates = &candidates[candidates.len().saturating_sub(MAX_BOILERPLATE_LINES)..];
    // Each line's start, lowercase: all the phrases need (a hostile line of a megabyte is
    // read this far only).
    let lower: Vec<String> = candidates
        .iter()
        .map(|&i| body[i].trim().chars().take(MAX_READ_CHARS).collect::<String>().to_lowercase())
        .collect();
    let opens_boilerplate = |k: usize| {
        let below = &lower[k..];
        if candidates[k..].iter().any(|&i| body[i].trim_end().ends_with('?')) {
            return false;
        }
        let line = lower[k].trim_matches(|c: char| "*_=#[]()!.: ".contains(c));
        let says_disclaimer = || DISCLAIMER_WORDS.iter().any(|w| below.iter().any(|l| l.contains(w)));
        let titled = DISCLAIMER_TITLES
            .iter()
            .any(|t| line.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.trim_start().starts_with(':')));
        let opened = DISCLAIMER_OPENINGS.iter().any(|o| line.starts_with(o))
            && below.iter().map(|l| l.chars().count()).sum::<usize>() >= MIN_DISCLAIMER_CHARS;
        // "Geschäftsführer: …", "Amtsgericht München, HRB 12345"; not "Geschäftsführer Meier
        // bittet um Rückruf."
        let registry = COMPANY_REGISTRY.iter().any(|r| line.starts_with(r))
            && (line.contains(':') || line.chars().filter(char::is_ascii_digit).count() >= 3)
            && below.iter().all(|l| l.chars().count() <= MAX_REGISTRY_LINE_CHARS);
        let print_note = PRINT_NOTES.iter().any(|p| line.starts_with(p)) && below.len() <= 2;
        ((titled || opened) && says_disclaimer()) || registry || print_note
    };
    let start = candidates[(0..candidates.len()).find(|&k| opens_boilerplate(k))?];
    let mut kept = body[..start].to_vec();
    // The rule or stars a disclaimer is set off with; "--" is the signature's to take.
    while kept.last().is_some_and(|l| {
        let l = l.trim();
        l.is_empty() || l.chars().all(|c| "_*=~#".contains(c)) || (l.chars().all(|c| c == '-') && l.len() > 2)
    }) {
        kept.pop();
    }
    // What is left must be more than a greeting.
    let left: Vec<&str> = kept.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    (left.len() > 1 || left.first().is_some_and(|l| !l.ends_with(','))).then_some(kept)
}

/// The line at which `body`'s signature begins, if it has one.
fn signature_start(body: &[&str], sender: Option<&Party>) -> Option<usize> {
    let with_text: Vec<usize> = (0..body.len()).filter(|&i| !body[i].trim().is_empty()).collect();
    let candidates = with_text.get(1..).unwrap_or_default();
    let candidates = &candidates[candidates.len().saturating_sub(MAX_LINES)..];
    let block = &candidates[candidates.len() - block_length(body, candidates)..];
    let names = sender.map(name_words).unwrap_or_default();
    let start = block.iter().copied().find(|&i| {
        let below = block.iter().filter(|&&j| j > i).map(|&j| body[j].trim());
        let opens = is_sign_off(body[i]) || is_dashes(body[i]) || is_name_line(body[i], &names, below.clone());
        opens && !below.clone().any(is_customers_text)
    })?;
    // What is left must be more than a greeting ("Hello,\n\nThanks!" keeps its thanks).
    let left: Vec<&str> = body[..start].iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    (left.len() > 1 || left.first().is_some_and(|l| !l.ends_with(','))).then_some(start)
}

/// How many of the `candidates` (indexes of lines with text, last first) can be a signature,
/// counted from the last: short lines, with at most one dash-led line at their top (talon's
/// `RE_SIGNATURE_CANDIDATE` over the lines marked `c`, `d` and `l`).
fn block_length(body: &[&str], candidates: &[usize]) -> usize {
    let mark = |i: usize| {
        let line = body[i].trim();
        match () {
            _ if line.chars().count() > MAX_LINE_CHARS => 'l',
            _ if line.starts_with('-') && !line.trim_matches('-').is_empty() => 'd',
            _ => 'c',
        }
    };
    let marks: Vec<char> = candidates.iter().rev().map(|&i| mark(i)).collect();
    let short = marks.iter().take_while(|&&m| m == 'c').count();
    // One dash-led line tops the block, unless the line above it is dash-led too.
    let dash_on_top = marks.get(short) == Some(&'d') && marks.get(short + 1) != Some(&'d');
    short + usize::from(dash_on_top)
}

/// A sign-off alone on its line ("Best regards,", "Danke!"). With a name on the same line
/// ("Regards, Roman") it is the customer's last words, as talon has it.
fn is_sign_off(line: &str) -> bool {
    let lower = line.trim().to_lowercase();
    SIGN_OFFS.contains(&lower.trim_end_matches(|c: char| c.is_whitespace() || ",.!;:".contains(c)))
}

/// A line of dashes, or dashes before a short name ("--", "---", "-Lev.", "- roman").
fn is_dashes(line: &str) -> bool {
    let line = line.trim();
    let after = line.trim_start_matches('-');
    after.len() < line.len()
        && after.split_whitespace().count() <= 2
        && after.chars().all(|c| c.is_alphabetic() || c == '.' || c == ' ')
}

/// The sender's name (`names`: its words, its address's, and its address's local part whole)
/// on a short line written as a name is (each word capitalised: "Gina Rossi", "John E. Doe,
/// Ph.D."; no colon: "Info: order 7 shipped" from info@ is text), with only business-card lines
/// `below` it. A company's jsmith@ or johnsmith@ is John Smith's.
fn is_name_line<'a>(line: &str, names: &[String], mut below: impl Iterator<Item = &'a str>) -> bool {
    let words_of_line: Vec<&str> = line.split_whitespace().collect();
    let line_words: Vec<String> = words(line).collect();
    let initial_and_surname = match (line_words.first(), line_words.last()) {
        (Some(first), Some(last)) if line_words.len() > 1 => {
            let initial = first.chars().next().map(String::from).unwrap_or_default();
            names.contains(&format!("{initial}{last}")) || names.contains(&format!("{first}{last}"))
        }
        _ => false,
    };
    words_of_line.len() <= 4
        && !line.contains(':')
        && !words_of_line.iter().any(|word| word.starts_with(char::is_lowercase))
        && (line_words.iter().any(|word| names.contains(word)) || initial_and_surname)
        && below.all(is_card_line)
}

/// A line of a business card: a few words, a title in capitals, a phone number, an address.
fn is_card_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let capitalised = words.iter().filter(|w| !w.starts_with(char::is_lowercase)).count();
    let lower = line.to_lowercase();
    words.len() <= 3
        || capitalised * 2 >= words.len()
        || line.contains('@')
        || lower.contains("http")
        || lower.contains("www.")
        || line.chars().filter(char::is_ascii_digit).count() >= 3
}

/// A line no signature has: a question, or a postscript.
fn is_customers_text(line: &str) -> bool {
    let lower = line.to_lowercase();
    line.ends_with('?') || ["p.s", "ps:", "ps ", "pps"].iter().any(|p| lower.starts_with(p))
}

/// The words (two letters or more, lowercase) of the sender's name and address's local part,
/// and the local part whole.
fn name_words(sender: &Party) -> Vec<String> {
    let local = sender.address.split('@').next().unwrap_or_default();
    let name = sender.name.as_deref().unwrap_or_default();
    words(name).chain(words(local)).chain([local.to_lowercase()]).collect()
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 2).map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::without_signature;
    use crate::model::Party;

    fn cut(text: &str, sender: Option<&Party>) -> String {
        without_signature(text.lines().collect(), sender)
    }

    #[test]
    fn sign_offs_in_the_languages_we_answer_in_begin_a_signature() {
        let cases = [
            ("Works now.\n\nBest regards,\nAnn Smith\nACME Ltd.\n+1 555 0100", "Works now."),
            ("Funktioniert.\n\nMit freundlichen Grüßen\nAnna Schmidt", "Funktioniert."),
            ("Ça marche.\n\nCordialement,\nAnne", "Ça marche."),
            ("Funciona.\n\nUn saludo,\nAna", "Funciona."),
            ("Działa.\n\nPozdrawiam\nAnna", "Działa."),
            ("Funguje.\n\nS pozdravem\nAnna Nováková", "Funguje."),
            ("Funguje.\n\nS pozdravom\nAnna", "Funguje."),
            ("Works now.\n\nCheers, Bob", "Works now.\n\nCheers, Bob"),
            ("Works now.\n\nDanke!\n\nVon meinem iPhone gesendet", "Works now."),
            ("Works now.\nSent wirelessly from my BlackBerry\nEnvoyé sans fil par mon terminal", "Works now."),
            ("Works now.\n---\nRoman", "Works now."),
        ];
        for (text, expected) in cases {
            assert_eq!(cut(text, None), expected, "{text:?}");
        }
    }

    #[test]
    fn the_senders_name_begins_a_signature_only_above_business_card_lines() {
        let gina = Party { address: "gina@example.com".into(), name: Some("Gina Rossi".into()) };
        let card = "The invoice is attached.\n\nGina Rossi\nHead of Purchasing\ngina@example.com\n(555) 346-9947";
        assert_eq!(cut(card, Some(&gina)), "The invoice is attached.");
        let prose = "The invoice is attached.\n\nGina,\nif there are more than\ntwo lines of text it is no card";
        assert_eq!(cut(prose, Some(&gina)), prose);
        // The address of a company's mail system: initial and surname, or both, run together.
        for address in ["grossi@example.com", "ginarossi@example.com"] {
            let sender = Party { address: address.into(), name: None };
            assert_eq!(cut(card, Some(&sender)), "The invoice is attached.", "{address}");
        }
        // Without the sender, a name is just a line; so is the sender's name in a sentence.
        assert_eq!(cut(card, None), card);
        let info = Party { address: "info@example.com".into(), name: None };
        for text in
            ["Hello,\nthe parcel is here.\nInfo: order 7 shipped", "Hello,\nthe parcel is here.\nInfo sent to you"]
        {
            assert_eq!(cut(text, Some(&info)), text);
        }
    }

    #[test]
    fn a_companys_disclaimer_imprint_or_print_note_goes_with_the_signature() {
        let cases = [
            (
                "Works now.\n\nBest regards,\nAnn Smith\nACME Ltd.\n\nCONFIDENTIALITY NOTICE: This e-mail and any\n\
                 attachments are confidential and may be privileged. If you are not the\n\
                 intended recipient, please notify the sender immediately and delete it.",
                "Works now.",
            ),
            (
                "Works now.\n\nAnn\n\n*** Disclaimer ***\nThe views expressed are the author's own. We accept no\n\
                 liability for viruses.",
                "Works now.\n\nAnn",
            ),
            (
                "Das Update hat geholfen.\n\nMit freundlichen Grüßen\nAnna Schmidt\n\n________________________________\n\n\
                 Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen. Wenn Sie nicht der \
                 richtige Adressat sind oder diese E-Mail irrtümlich erhalten haben, informieren Sie bitte sofort \
                 den Absender und vernichten Sie diese Mail.\n\nThis e-mail may contain confidential and/or \
                 privileged information. If you are not the intended recipient, please notify the sender.",
                "Das Update hat geholfen.",
            ),
            (
                "Bitte senden Sie die Rechnung erneut.\n\nMit freundlichen Grüßen\n\nAnna Schmidt\nEinkauf\n\n\
                 Muster GmbH\nHauptstraße 1\n10115 Berlin\nTel.: +49 30 1234567\nFax: +49 30 1234568\n\
                 www.muster.de\n\nGeschäftsführer: Max Mustermann, Erika Musterfrau\nSitz der Gesellschaft: Berlin\n\
                 Registergericht: Amtsgericht Charlottenburg, HRB 123456 B\nUSt-IdNr.: DE123456789",
                "Bitte senden Sie die Rechnung erneut.",
            ),
            (
                "Proszę o korektę faktury.\n\nPozdrawiam\nJan Kowalski\n\nTa wiadomość zawiera informacje poufne \
                 przeznaczone wyłącznie dla adresata. Jeżeli nie są Państwo adresatem, prosimy o niezwłoczne \
                 powiadomienie nadawcy i usunięcie wiadomości.\nSąd Rejonowy dla m.st. Warszawy, KRS 0000123456",
                "Proszę o korektę faktury.",
            ),
            (
                "Ce n'est pas réglé.\n\nCordialement,\nAnne\n\nCe message et toutes les pièces jointes sont \
                 confidentiels et établis à l'intention exclusive de ses destinataires. Si vous n'êtes pas le \
                 destinataire de ce message, merci de le détruire et d'avertir l'expéditeur.",
                "Ce n'est pas réglé.",
            ),
            ("Received, thank you.\n\nPlease consider the environment before printing this email.", "Received, thank you."),
        ];
        for (text, expected) in cases {
            assert_eq!(cut(text, None), expected, "{text:?}");
        }
    }

    #[test]
    fn the_customers_own_words_about_confidentiality_or_their_company_stay() {
        let cases = [
            // Too short for a disclaimer, and no title.
            "Please find the contract attached.\n\nThis message is confidential, please do not forward it.",
            // A question below.
            "Hello,\n\nthis email contains the confidential figures of our contract, which we need you to \
             review and confirm by Friday, as our intended recipient of the offer. Can you do that?",
            // The first line is the customer's, whatever it says.
            "This e-mail is confidential: the intended recipient of our offer is you, and we would like to \
             know how long the offer is valid for our company.",
            // Invoice details are not an imprint; nor is a sentence about the managing director.
            "Proszę o fakturę na:\nACME Sp. z o.o.\nul. Długa 1\n00-001 Warszawa\nNIP: 123-456-78-90",
            "Hallo,\n\ndie Lieferung fehlt noch.\nGeschäftsführer Meier bittet um Rückruf.",
            // A greeting alone would be left.
            "Hello,\n\nDISCLAIMER: this e-mail is confidential and meant for its intended recipient only.",
        ];
        for text in cases {
            assert_eq!(cut(text, None), text, "{text:?}");
        }
    }

    #[test]
    fn a_question_a_postscript_or_a_lone_greeting_keeps_the_lines() {
        let cases = [
            "Here it is.\n\nThanks,\nAnn\n\nCan you also send the invoice?",
            "Here it is.\n\nThanks,\nAnn\n\nP.S. The parcel was wet.",
            "Hello,\n\nThank you!",
            "Sent from my phone, the parcel is broken\nand wet.",
            "Hi,\nsent from my laptop because the phone broke and the app does not open at all",
            "--\nRoman",
        ];
        for text in cases {
            assert_eq!(cut(text, None), text, "{text:?}");
        }
        // Lines with text long enough to be prose end the signature above them.
        let long = "Hi\n\nThanks in advance,\nsome long text here which does not seem to be a signature at all\nBob";
        let bob = Party { address: "bob@example.org".into(), name: None };
        assert_eq!(cut(long, Some(&bob)), long.strip_suffix("\nBob").unwrap());
    }
}
