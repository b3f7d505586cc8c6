//! Mail threading: which conversation an inbound mail joins, and why.
//!
//! Lookup order: In-Reply-To, References (newest first), our own Message-ID pattern
//! (`<msg_….cnv_…@domain>`, found in either), the reply token (the plus address
//! `support+cnv_…@example.com`, else our `[ref:cnv_…]` marker quoted in the body), then the
//! normalised subject from the same contact within a window. Sender guard: a candidate is taken
//! only if the sender already took part in that conversation (sender or recipient of one of its
//! mails) or is its contact, so a stranger replying to a forwarded mail or a newsletter starts a
//! conversation of their own. Mail from our own addresses is exempt (`StoreLookup::any_sender`).
//!
//! Pure: the store is reached through the `MailLookup` trait.

use crate::model::{ConversationId, MessageId};

/// The threading facts of one inbound mail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailThreading {
    /// The mail's own Message-ID, without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    /// Oldest first, as in the header.
    pub references: Vec<String>,
    /// A conversation id found in a `local+cnv_…@domain` recipient.
    pub reply_token: Option<ConversationId>,
    pub subject_key: Option<String>,
    /// The UID of the calendar event an invitation, its update or cancellation, or an answer to
    /// one is about (iTIP methods only: a plain event file threads by nothing of it).
    pub calendar_uid: Option<String>,
    /// Identities of everyone on the mail (From, To, Cc), recorded as participants.
    pub participants: Vec<String>,
    /// How far back a subject match may reach (ms).
    pub subject_window_ms: i64,
}

/// What threading needs to know from the store.
pub trait MailLookup {
    type Error;
    /// Conversations holding a mail with this Message-ID on this channel, newest first.
    fn by_header(&mut self, header_id: &str) -> Result<Vec<String>, Self::Error>;
    fn exists(&mut self, conversation_id: &str) -> Result<bool, Self::Error>;
    /// Whether the sender may join: a participant, or the conversation's contact.
    fn sender_allowed(&mut self, conversation_id: &str) -> Result<bool, Self::Error>;
    /// The sender's newest conversation with this subject key within the window.
    fn by_subject(&mut self, subject_key: &str) -> Result<Option<String>, Self::Error>;
    /// Conversations holding mail about the calendar event with this UID on this channel,
    /// newest first.
    fn by_calendar_uid(&mut self, uid: &str) -> Result<Vec<String>, Self::Error>;
}

/// A conversation a mail joins: which, why (`stitch.reason`), and, when its threading headers
/// decided, the Message-ID that did (the message the mail answers, if the conversation holds it).
#[derive(Debug, PartialEq, Eq)]
pub struct Joined {
    pub conversation: String,
    pub reason: &'static str,
    pub header: Option<String>,
}

/// How many Message-IDs of In-Reply-To, and of References (the newest; the thread's start is
/// looked up as well), are looked up. Real threads name a few dozen; a hostile mail can name a
/// million, each a lookup in the store's one writer, which every channel waits for.
const IDS_LOOKED_UP: usize = 100;

/// The Message-IDs a mail is threaded by, in the order they are looked up, each with the
/// `stitch.reason` it gives: In-Reply-To, then References newest first — at most
/// `IDS_LOOKED_UP` of each, and the thread's start when References names more.
pub fn threading_ids(mail: &MailThreading) -> impl Iterator<Item = (&'static str, &String)> {
    let newest = mail.references.iter().rev().take(IDS_LOOKED_UP);
    let start = mail.references.first().filter(|_| mail.references.len() > IDS_LOOKED_UP);
    let in_reply_to = mail.in_reply_to.iter().take(IDS_LOOKED_UP).map(|id| ("in_reply_to", id));
    in_reply_to.chain(newest.chain(start).map(|id| ("references", id)))
}

/// The conversation to join, or `None` for a new conversation.
pub fn find_conversation<L: MailLookup>(mail: &MailThreading, lookup: &mut L) -> Result<Option<Joined>, L::Error> {
    for (reason, id) in threading_ids(mail) {
        let mut candidates = lookup.by_header(id)?;
        if let Some(own) = own_conversation(id) {
            if lookup.exists(own.as_str())? && !candidates.iter().any(|c| c == own.as_str()) {
                candidates.push(own.to_string());
            }
        }
        for candidate in candidates {
            if lookup.sender_allowed(&candidate)? {
                return Ok(Some(Joined { conversation: candidate, reason, header: Some(id.clone()) }));
            }
        }
    }
    if let Some(token) = &mail.reply_token {
        if lookup.exists(token.as_str())? && lookup.sender_allowed(token.as_str())? {
            return Ok(Some(Joined { conversation: token.to_string(), reason: "token", header: None }));
        }
    }
    // An invitation's update, its cancellation and the answers to it each say something else in
    // the subject ("Updated invitation: …", "Canceled: …", "Accepted: …"), and calendars often
    // leave out In-Reply-To: the event's UID is what they share.
    if let Some(uid) = mail.calendar_uid.as_deref().filter(|u| !u.is_empty()) {
        for candidate in lookup.by_calendar_uid(uid)? {
            if lookup.sender_allowed(&candidate)? {
                return Ok(Some(Joined { conversation: candidate, reason: "calendar", header: None }));
            }
        }
    }
    if let Some(key) = mail.subject_key.as_deref().filter(|k| !k.is_empty()) {
        if let Some(candidate) = lookup.by_subject(key)? {
            return Ok(Some(Joined { conversation: candidate, reason: "subject", header: None }));
        }
    }
    Ok(None)
}

/// Our outbound Message-IDs look like `msg_….cnv_…@domain`; this reads the conversation back.
pub fn own_conversation(header_id: &str) -> Option<ConversationId> {
    own_message(header_id).map(|(_, conversation)| conversation)
}

/// The message and conversation one of our outbound Message-IDs names.
pub fn own_message(header_id: &str) -> Option<(MessageId, ConversationId)> {
    let local = header_id.split('@').next()?;
    let (message, conversation) = local.split_once('.')?;
    Some((MessageId::parse(message)?, ConversationId::parse(conversation)?))
}

/// The Message-ID we give an outbound mail.
pub fn own_message_id(message_id: &str, conversation_id: &str, domain: &str) -> String {
    format!("{message_id}.{conversation_id}@{domain}")
}

/// Whether `address` is `ours`, or ours with a `+token`.
pub fn is_own_address(address: &str, ours: &str) -> bool {
    let (Some((local, domain)), Some((our_local, our_domain))) = (address.rsplit_once('@'), ours.rsplit_once('@'))
    else {
        return false;
    };
    let base = local.split('+').next().unwrap_or(local);
    domain.eq_ignore_ascii_case(our_domain) && base.eq_ignore_ascii_case(our_local)
}

/// `support+cnv_…@example.com` → the conversation, when `address` is our address plus a token.
pub fn reply_token(address: &str, our_address: &str) -> Option<ConversationId> {
    if !is_own_address(address, our_address) {
        return None;
    }
    let (_, token) = address.rsplit_once('@')?.0.split_once('+')?;
    // Mail systems may lowercase the local part; ids are upper-case Crockford base32.
    let (prefix, rest) = token.split_at(token.find('_')? + 1);
    ConversationId::parse(&format!("{}{}", prefix.to_ascii_lowercase(), rest.to_ascii_uppercase()))
}

/// The reference `body_token` puts at the end of an outbound mail's text and HTML. It survives
/// what a Message-ID does not: a relay that rewrites our Message-ID (the reply's In-Reply-To
/// then names a mail we never saw) and a changed subject. No spaces, so quoting and re-wrapping
/// keep it whole.
pub fn body_marker(conversation_id: &str) -> String {
    format!("[ref:{conversation_id}]")
}

/// The conversation named by the first well-formed `body_marker` in `text` (a reply quotes the
/// mail it answers, marker included).
pub fn body_token(text: &str) -> Option<ConversationId> {
    let mut rest = text;
    while let Some(at) = rest.find("[ref:") {
        rest = &rest[at + "[ref:".len()..];
        let candidate = rest.split(']').next().filter(|c| c.len() < 64 && rest.len() > c.len());
        if let Some(id) = candidate.and_then(ConversationId::parse) {
            return Some(id);
        }
    }
    None
}

/// Reply and forward prefixes in the languages our users write in (lowercase, without colon;
/// Turkish "İLT" lowercases with a combining dot).
const PREFIXES: &[&str] = &[
    "re",
    "fwd",
    "fw",
    "aw",
    "wg",
    "sv",
    "vs",
    "odp",
    "pd",
    "tr",
    "rv",
    "enc",
    "res",
    "antw",
    "doorst",
    "vl",
    "ynt",
    "回复",
    "答复",
    "回覆",
    "转发",
    "fwd.",
    "r",
    "rif",
    "i",
    "vb",
    "vá",
    "továbbítás",
    "ilt",
    "i\u{307}lt",
    "απ",
    "σχετ",
    "πρθ",
];

/// The reply prefixes among `PREFIXES` (the rest mark forwards, which a reply still prefixes;
/// Spanish Outlook's `RV:` is "reenviado").
const REPLY_PREFIXES: &[&str] =
    &["re", "aw", "sv", "vs", "odp", "r", "res", "antw", "ynt", "回复", "答复", "回覆", "rif", "vá", "απ", "σχετ"];

/// Whether `subject` already starts with a reply prefix in any of our languages (`Re:`, `AW:`,
/// `SV:`, `Odp:`, `Re[2]:` …), so that an answer need not add another.
pub fn is_reply_subject(subject: &str) -> bool {
    leading_prefix(subject.trim()).is_some_and(|(word, _)| REPLY_PREFIXES.contains(&word.as_str()))
}

/// Whether `subject` starts with a forward prefix (`Fwd:`, `FW:`, `WG:`, `TR:`, `PD:`, `RV:` …).
pub fn is_forward_subject(subject: &str) -> bool {
    leading_prefix(subject.trim())
        .is_some_and(|(word, _)| PREFIXES.contains(&word.as_str()) && !REPLY_PREFIXES.contains(&word.as_str()))
}

/// Tags that mail gateways put in front of the subject of mail from outside the organisation;
/// a reply carries ours as `RE: [EXTERNAL] <our subject>`.
const GATEWAY_TAGS: &[&str] = &[
    "[external]",
    "[ext]",
    "[external email]",
    "[external mail]",
    "[external sender]",
    "*external*",
    "[extern]",
    "[externe]",
    "[externo]",
    "[zewnętrzny]",
    "[externí]",
];

/// The subject with reply/forward prefixes removed (repeated, counted like `Re[2]:` or
/// `RE (2):`, or wrapped like `[Fwd: …]`) and mail gateways' `[EXTERNAL]` tags, whitespace
/// collapsed, lowercased.
pub fn normalize_subject(subject: &str) -> String {
    // Slices only, each round shorter than the last: a subject of 200,000 `Re: ` (a hostile
    // mail) costs one pass, not a copy of the rest per prefix (that took minutes, and held the
    // folder meanwhile).
    let mut s = subject.trim();
    loop {
        let before = s.len();
        // `[Fwd: subject]` → `Fwd: subject`
        if s.starts_with('[') && s.ends_with(']') {
            let inner = &s[1..s.len() - 1];
            if strip_prefix(inner).is_some() {
                s = inner.trim();
            }
        }
        if let Some(rest) = strip_prefix(s) {
            s = rest.trim_start();
        }
        if let Some(tag) = gateway_tag(s) {
            s = s[tag..].trim_start();
        }
        if s.len() == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The length of the mail gateway tag `s` starts with, if any.
fn gateway_tag(s: &str) -> Option<usize> {
    // Tags are ASCII apart from a few letters whose lowercase has the same length, so the
    // lowercased head of `s` measures them in `s`.
    let head: String = s.chars().take(24).collect::<String>().to_lowercase();
    let tag = GATEWAY_TAGS.iter().find(|t| head.starts_with(**t))?;
    s.is_char_boundary(tag.len()).then_some(tag.len())
}

/// Removes one leading `prefix[n]:`; `None` if there is none.
fn strip_prefix(s: &str) -> Option<&str> {
    let (word, rest) = leading_prefix(s)?;
    PREFIXES.contains(&word.as_str()).then_some(rest)
}

/// What precedes the first colon, lowercased and without a counter (`re[2]`, `re (2)`, `re^2`
/// → `re`), and what follows it; a candidate for a reply or forward prefix.
fn leading_prefix(s: &str) -> Option<(String, &str)> {
    let colon = s.char_indices().find(|(_, c)| *c == ':' || *c == '：')?;
    let (head, rest) = s.split_at(colon.0);
    let word = head.trim().to_lowercase();
    let word = word.trim_end_matches(|c: char| c.is_ascii_digit() || "[]() ^".contains(c)).to_owned();
    Some((word, &rest[colon.1.len_utf8()..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn a_subject_of_a_hundred_thousand_prefixes_normalises_in_one_pass() {
        let hostile = format!("{}Invoice 42", "Re: [EXTERNAL] ".repeat(100_000));
        assert_eq!(normalize_subject(&hostile), "invoice 42");
        let wrapped = format!("{}Invoice 42{}", "[Fwd: ".repeat(50_000), "]".repeat(50_000));
        assert_eq!(normalize_subject(&wrapped), "invoice 42");
    }

    #[test]
    fn subjects_normalise_across_clients_and_languages() {
        let cases = [
            ("Re: Invoice 42", "invoice 42"),
            ("RE: RE: Invoice 42", "invoice 42"),
            ("Fwd: Re: Invoice 42", "invoice 42"),
            ("FW: Invoice 42", "invoice 42"),
            ("AW: WG: Invoice 42", "invoice 42"),
            ("SV: VS: Invoice 42", "invoice 42"),
            ("Odp: PD: Invoice 42", "invoice 42"),
            ("TR: Invoice 42", "invoice 42"),
            ("回复: Invoice 42", "invoice 42"),
            ("答复：Invoice 42", "invoice 42"),
            ("Re[2]: Invoice 42", "invoice 42"),
            ("R: I: Fattura 42", "fattura 42"),
            ("VB: SV: Faktura 42", "faktura 42"),
            ("Vá: Továbbítás: Számla 42", "számla 42"),
            ("ΑΠ: ΣΧΕΤ: Τιμολόγιο 42", "τιμολόγιο 42"),
            ("YNT: İLT: Fatura 42", "fatura 42"),
            ("RE (3): Invoice  42", "invoice 42"),
            ("[Fwd: Invoice 42]", "invoice 42"),
            ("Invoice 42", "invoice 42"),
            ("Meeting: Monday", "meeting: monday"),
            ("RE: [EXTERNAL] Invoice 42", "invoice 42"),
            ("AW: [EXTERN] AW: Invoice 42", "invoice 42"),
            ("*EXTERNAL* Re: Invoice 42", "invoice 42"),
            ("[Order 7] Invoice 42", "[order 7] invoice 42"),
            ("Reminder: pay", "reminder: pay"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_subject(input), expected, "{input}");
        }
    }

    #[test]
    fn reply_subjects_are_recognised_in_every_language_forwards_are_not() {
        for reply in ["Re: x", "RE: x", "AW: Rechnung", "SV: x", "Odp: x", "Re[2]: x", "回复: x", "  re : x"] {
            assert!(is_reply_subject(reply), "{reply}");
        }
        for other in ["Fwd: x", "WG: x", "Invoice 42", "Meeting: Monday", "Re x", ""] {
            assert!(!is_reply_subject(other), "{other}");
        }
    }

    #[test]
    fn own_ids_and_tokens_read_back() {
        let cnv = ConversationId::new();
        let id = own_message_id("msg_01ABC", cnv.as_str(), "example.com");
        assert_eq!(own_conversation(&id), Some(cnv.clone()));
        assert_eq!(own_conversation("CAF123@mail.gmail.com"), None);
        let token = format!("support+{}@Example.com", cnv.as_str().to_lowercase());
        assert_eq!(reply_token(&token, "support@example.com"), Some(cnv.clone()));
        assert_eq!(reply_token(&format!("sales+{cnv}@example.com"), "support@example.com"), None);
        assert_eq!(reply_token(&format!("support+{cnv}@evil.com"), "support@example.com"), None);
    }

    #[test]
    fn the_body_marker_is_found_where_a_reply_quotes_it() {
        let cnv = ConversationId::new();
        let marker = body_marker(cnv.as_str());
        let quoted = format!("Thanks!\n\nOn Mon, Ann wrote:\n> Your order shipped.\n>\n> {marker}\n");
        assert_eq!(body_token(&quoted), Some(cnv.clone()));
        let html =
            format!("<p>Thanks!</p><blockquote><p>Shipped.</p><p style=\"color:#888\">{marker}</p></blockquote>");
        assert_eq!(body_token(&html), Some(cnv.clone()));
        // Broken or foreign forms first, the real one after them.
        let noisy = format!("[ref:] [ref:msg_01ABC] [ref:cnv_ with space] [ref:cnv_01ABC {marker}");
        assert_eq!(body_token(&noisy), Some(cnv.clone()));
        assert_eq!(body_token("[ref:cnv_01ABC"), None);
        assert_eq!(body_token("no marker at all"), None);
    }

    #[derive(Default)]
    struct Fake {
        looked_up: usize,
        headers: HashMap<String, Vec<String>>,
        allowed: HashSet<String>,
        subjects: HashMap<String, String>,
        calendar_uids: HashMap<String, Vec<String>>,
        existing: HashSet<String>,
    }

    impl MailLookup for Fake {
        type Error = ();
        fn by_header(&mut self, h: &str) -> Result<Vec<String>, ()> {
            self.looked_up += 1;
            Ok(self.headers.get(h).cloned().unwrap_or_default())
        }
        fn exists(&mut self, c: &str) -> Result<bool, ()> {
            Ok(self.existing.contains(c))
        }
        fn sender_allowed(&mut self, c: &str) -> Result<bool, ()> {
            Ok(self.allowed.contains(c))
        }
        fn by_subject(&mut self, k: &str) -> Result<Option<String>, ()> {
            Ok(self.subjects.get(k).cloned())
        }
        fn by_calendar_uid(&mut self, uid: &str) -> Result<Vec<String>, ()> {
            Ok(self.calendar_uids.get(uid).cloned().unwrap_or_default())
        }
    }

    fn mail() -> MailThreading {
        MailThreading { subject_key: Some("invoice".into()), ..Default::default() }
    }

    fn joined(conversation: &str, reason: &'static str, header: Option<&str>) -> Joined {
        Joined { conversation: conversation.to_owned(), reason, header: header.map(str::to_owned) }
    }

    #[test]
    fn lookup_order_and_sender_guard() {
        let mut fake = Fake::default();
        fake.headers.insert("a@x".into(), vec!["cnv_A".into()]);
        fake.headers.insert("b@x".into(), vec!["cnv_B".into()]);
        fake.allowed.extend(["cnv_A".to_string(), "cnv_B".into(), "cnv_S".into()]);
        fake.subjects.insert("invoice".into(), "cnv_S".into());

        let m = MailThreading { in_reply_to: vec!["a@x".into()], references: vec!["b@x".into()], ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_A", "in_reply_to", Some("a@x")))));
        // A client that drops In-Reply-To: the newest reference wins.
        let m = MailThreading { references: vec!["a@x".into(), "b@x".into()], ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_B", "references", Some("b@x")))));
        // Nothing known: the subject, from the same contact.
        let m = MailThreading { in_reply_to: vec!["unknown@x".into()], ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_S", "subject", None))));
        // A stranger's reply to a known mail does not join it.
        fake.allowed.remove("cnv_A");
        let m = MailThreading { in_reply_to: vec!["a@x".into()], subject_key: None, ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(None));
        // A calendar event's UID after the headers and before the subject; the newest
        // conversation the sender may join.
        fake.calendar_uids.insert("event-1".into(), vec!["cnv_A".into(), "cnv_C".into(), "cnv_B".into()]);
        fake.allowed.insert("cnv_C".into());
        let m = MailThreading { calendar_uid: Some("event-1".into()), ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_C", "calendar", None))));
        let m = MailThreading { in_reply_to: vec!["b@x".into()], calendar_uid: Some("event-1".into()), ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_B", "in_reply_to", Some("b@x")))));
        fake.allowed.remove("cnv_C");
        fake.allowed.remove("cnv_B");
        let m = MailThreading { calendar_uid: Some("event-1".into()), ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_S", "subject", None))));
    }

    #[test]
    fn a_mail_naming_a_hundred_thousand_references_costs_a_hundred_lookups() {
        let mut fake = Fake::default();
        fake.allowed.insert("cnv_R".into());
        let references: Vec<String> = (0..100_000).map(|i| format!("ref-{i}@x")).collect();
        let m = MailThreading { references: references.clone(), subject_key: None, ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(None));
        assert_eq!(fake.looked_up, 101, "the newest hundred and the thread's start");
        // The thread's start still joins a long thread.
        fake.headers.insert("ref-0@x".into(), vec!["cnv_R".into()]);
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined("cnv_R", "references", Some("ref-0@x")))));
        let m = MailThreading { in_reply_to: references, subject_key: None, ..mail() };
        let mut unknown = Fake::default();
        assert_eq!(find_conversation(&m, &mut unknown), Ok(None));
        assert_eq!(unknown.looked_up, 100);
    }

    #[test]
    fn our_message_id_names_its_message_and_conversation() {
        let (msg, cnv) = (MessageId::new(), ConversationId::new());
        let ours = own_message_id(msg.as_str(), cnv.as_str(), "example.com");
        assert_eq!(own_message(&ours), Some((msg, cnv.clone())));
        assert_eq!(own_conversation(&ours), Some(cnv));
        for other in ["ann-1@example.org", "msg_.cnv_1@x", "msg_1.x_2@x", "x_1.cnv_2@x", "msg_1@x", "msg_1.cnv_2-3@x"] {
            assert_eq!(own_message(other), None, "{other}");
        }
    }

    #[test]
    fn own_message_id_and_token_find_the_conversation() {
        let cnv = ConversationId::new();
        let mut fake = Fake::default();
        fake.existing.insert(cnv.to_string());
        fake.allowed.insert(cnv.to_string());
        let ours = own_message_id("msg_01X", cnv.as_str(), "example.com");
        let m = MailThreading { references: vec![ours.clone()], subject_key: None, ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined(cnv.as_str(), "references", Some(&ours)))));
        let m = MailThreading { reply_token: Some(cnv.clone()), subject_key: None, ..mail() };
        assert_eq!(find_conversation(&m, &mut fake), Ok(Some(joined(cnv.as_str(), "token", None))));
    }
}
