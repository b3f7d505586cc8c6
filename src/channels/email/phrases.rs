//! The words mail clients write above quoted history and forwarded mail, per language,
//! lowercase. Data only: `reply` (where the answer ends) and `forward` (whose mail a colleague
//! forwarded) match them, each in its own way.

/// The words between the dashes of a separator line ("-----Original Message-----",
/// "----- Original Message -----", "-------- Ursprüngliche Nachricht --------"): what follows
/// is a copy of the history below the answer.
pub(super) const SEPARATOR_TITLES: &[&str] = &[
    "original message",
    "reply message",
    "ursprüngliche nachricht",
    "antwort nachricht",
    "message d'origine",
    "mensaje original",
    "oryginalna wiadomość",
    "wiadomość oryginalna",
    "původní zpráva",
    "pôvodná správa",
    "messaggio originale",
    "oorspronkelijk bericht",
    "mensagem original",
    "ursprungligt meddelande",
    "oprindelig meddelelse",
    "opprinnelig melding",
    "alkuperäinen viesti",
    "исходное сообщение",
    "původní e-mail",
];

/// The words between the dashes of a forward's separator ("---------- Forwarded message
/// ---------"): what follows is a mail the customer passes on to us, not history.
pub(super) const FORWARD_TITLES: &[&str] = &[
    "forwarded message",
    "weitergeleitete nachricht",
    "message transféré",
    "mensaje reenviado",
    "wiadomość przekazana dalej",
    "przekazana wiadomość",
    "přeposlaná zpráva",
    "preposlaná správa",
    "messaggio inoltrato",
    "doorgestuurd bericht",
    "mensagem encaminhada",
    "vidarebefordrat meddelande",
    "videresendt meddelelse",
    "videresendt melding",
    "пересланное сообщение",
];

/// Apple Mail's forward line, on its own (no dashes).
pub(super) const FORWARD_LINES: &[&str] = &[
    "begin forwarded message:",
    "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié :",
    "début du message réexpédié:",
    "inicio del mensaje reenviado:",
    "início da mensagem reencaminhada:",
    "początek przekazanej wiadomości:",
    "początek przekazywanej wiadomości:",
    "začátek přeposlané zprávy:",
    "začátek přeposílané zprávy:",
    "inizio messaggio inoltrato:",
    "begin doorgestuurd bericht:",
    "vidarebefordrat mejl:",
];

/// (opening, verb) of a reply header that opens with a fixed word: "On … wrote:",
/// "Am … schrieb …:", "Dne … napsal(a) …:", "Op … heeft … het volgende geschreven:".
pub(super) const ATTRIBUTIONS: &[(&str, &str)] = &[
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
    ("op ", "geschreven"),
    ("em ", "escreveu"),
    ("den ", "skrev"),
    ("på ", "skrev"),
];

/// Verbs of reply headers that do not open with a fixed word: Gmail's in Polish, Czech and
/// Slovak open with the weekday ("pt., 27 lis 2026 o 14:03 Ann <ann@…> napisał(a):"), Apple
/// Mail's Polish with "Wiadomość napisana przez", Android's with the date.
pub(super) const ATTRIBUTION_VERBS: &[&str] = &[
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
    "geschreven",
    "escreveu",
    "skrev",
    "написал",
    "написала",
    "пишет",
    "đã viết",
    "kirjoitti",
    "írta",
    "yazdı",
];

/// The fields of Outlook's header block ("From: … Sent: … To: … Subject: …") and of the
/// header copies other clients write, and of forwarded header blocks, per language: the From
/// line's labels.
pub(super) const FROM_FIELDS: &[&str] =
    &["from:", "von:", "de :", "de:", "od:", "da:", "van:", "från:", "fra:", "от:", "发件人:", "寄件者:", "发件人："];
/// The date line's labels ("Sent:", "Date:", "Gesendet:" …); `written_date` reads its value.
pub(super) const SENT_FIELDS: &[&str] = &[
    "sent:",
    "date:",
    "gesendet:",
    "datum:",
    "envoyé :",
    "envoyé:",
    "date :",
    "enviado:",
    "enviada:",
    "fecha:",
    "wysłano:",
    "wysłane:",
    "enviado el:",
    "data:",
    "odesláno:",
    "odoslané:",
    "dátum:",
    "inviato:",
    "verzonden:",
    "enviado em:",
    "enviada em:",
    "skickat:",
    "sendt:",
    "отправлено:",
    "дата:",
];
/// The other fields' labels (To, Cc, Subject).
pub(super) const OTHER_FIELDS: &[&str] = &[
    "to:",
    "cc:",
    "subject:",
    "an:",
    "betreff:",
    "à :",
    "à:",
    "objet :",
    "objet:",
    "para:",
    "asunto:",
    "do:",
    "temat:",
    "komu:",
    "předmět:",
    "predmet:",
    "a:",
    "oggetto:",
    "aan:",
    "onderwerp:",
    "assunto:",
    "till:",
    "til:",
    "ämne:",
    "emne:",
    "кому:",
    "тема:",
];

/// Mobile clients' footers under the answer: "Sent from my iPhone".
pub(super) const FOOTERS: &[&str] = &[
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
