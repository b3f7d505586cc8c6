//! HTML to plain text, for mail with no text part and for our own HTML-only answers.
//!
//! mail-parser's `html_to_text` breaks lines only at `<br>` and `</p>`. Gmail, Outlook on the
//! web and Windows Mail write each line of a message as a `<div>`, so its text ran the lines
//! together: "Thanks,</div><div>Alex" read "Thanks,Alex", and neither the reply's signature nor
//! its quoted history could be found line by line. Here every edge of a block element (`div`,
//! list items, table rows, headings, quotes, …) ends the line, as a browser shows it: once,
//! however many edges meet, and not on an empty line (`<div><br></div>` is one blank line).
//! mail-parser also drops the space after a line's first word when a tag follows it ("<br><b>
//! Gesendet:</b> Montag" read "Gesendet:Montag"); the marks this module puts in keep it.

use mail_parser::decoders::html::html_to_text as inline_text;

/// Stands for a block element's edge between the two passes. Private use: no text has it, and
/// any that did would only gain a line break.
const BLOCK_EDGE: char = '\u{E000}';

/// Stands for `<br>` or `</p>` between the two passes: a line break even on an empty line.
const LINE_BREAK: char = '\u{E001}';

/// The elements a browser shows on lines of their own (`p` ends its line with `</p>`, which
/// is a `LINE_BREAK` here, as `br` is).
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "article",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "ol",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// The text of `html`, a line for each line a browser would show.
pub fn html_to_text(html: &str) -> String {
    with_line_breaks(&inline_text(&with_block_edges(html)))
}

/// `html` with `BLOCK_EDGE` before each opening and closing tag of a block element, a space
/// before each table cell ("<td>a</td><td>b</td>" is "a b", not "ab"), and `<br>` and `</p>`
/// replaced by `LINE_BREAK` (after a `<wbr>`, which mail-parser passes over: its `<` ends a
/// broken tag before it, "</</p>", as the replaced tag's did).
///
/// Each mark is followed by a space. mail-parser drops the space after the first word of a
/// line when a tag follows that word ("<br><b>Sent:</b> Monday" read "Sent:Monday"); a space
/// that ends a token of its own, the mark, puts it back in step.
fn with_block_edges(html: &str) -> String {
    let mut marked = String::with_capacity(html.len() + html.len() / 16);
    let mut copied = 0;
    for (at, _) in html.match_indices('<') {
        if at < copied {
            continue; // inside a tag already replaced
        }
        let closing = html[at + 1..].starts_with('/');
        let name = &html[at + 1 + usize::from(closing)..];
        let name = &name[..name.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(name.len())];
        let is = |element: &str| name.eq_ignore_ascii_case(element);
        // A `<` before the `>` starts another tag (as mail-parser reads it): this one is no tag.
        let tag_end = || {
            let end = at + 1 + html[at + 1..].find(['<', '>'])?;
            html[end..].starts_with('>').then_some(end + 1)
        };
        // (the mark, if any, and where the HTML goes on: the tag itself, or after it)
        let (mark, resume) = match () {
            _ if BLOCK_ELEMENTS.iter().any(|block| is(block)) => (Some(BLOCK_EDGE), at),
            _ if !closing && (is("td") || is("th")) => (None, at),
            _ if is("br") || (closing && is("p")) => match tag_end() {
                Some(end) => (Some(LINE_BREAK), end),
                None => continue,
            },
            _ => continue,
        };
        marked.push_str(&html[copied..at]);
        if mark == Some(LINE_BREAK) {
            marked.push_str("<wbr>");
        }
        marked.extend(mark);
        marked.push(' ');
        copied = resume;
    }
    marked.push_str(&html[copied..]);
    marked
}

/// `text` with each run of `BLOCK_EDGE`s after words made one line break (none at the end),
/// those on an empty line dropped, and no spaces at either end of a line.
fn with_line_breaks(text: &str) -> String {
    let mut lines = String::with_capacity(text.len());
    let (mut line_has_words, mut line_ends) = (false, false);
    for c in text.chars() {
        if line_ends && (c == '\n' || c == LINE_BREAK || !(c.is_whitespace() || c == BLOCK_EDGE)) {
            end_line(&mut lines);
            (line_has_words, line_ends) = (false, false);
        }
        match c {
            BLOCK_EDGE => line_ends |= line_has_words,
            // mail-parser's own line breaks, should any be left, are ours too.
            '\n' | LINE_BREAK => {
                end_line(&mut lines);
                line_has_words = false;
            }
            c if c.is_whitespace() && !line_has_words => {}
            c => {
                lines.push(c);
                line_has_words |= !c.is_whitespace();
            }
        }
    }
    lines.truncate(lines.trim_end_matches([' ', '\t']).len());
    lines
}

fn end_line(lines: &mut String) {
    lines.truncate(lines.trim_end_matches([' ', '\t']).len());
    lines.push('\n');
}

#[cfg(test)]
mod tests {
    use super::{html_to_text, inline_text};

    /// Line breaks are all this adds to mail-parser's text: over 3,000 HTML texts of block and
    /// inline tags, entities, comments, styles, stray brackets and multibyte words in every order
    /// (the same sequence every run), the two have the same characters but for whitespace.
    #[test]
    fn only_line_breaks_are_added_whatever_the_html() {
        const POOL: &[&str] = &[
            "<div>",
            "</div>",
            "<DIV class=\"x\">",
            "<p>",
            "</p>",
            "<br>",
            "<td>",
            "<th>",
            "</tr>",
            "<li>",
            "<hr/>",
            "<b>",
            "</b>",
            "word",
            "Zürich ✓",
            "&amp;",
            "&",
            "&lt;div",
            " ",
            "\n",
            "<style>div{}</style>",
            "<!-- <div> -->",
            "<",
            ">",
            "</",
            "<blockquote type=cite>",
            "<td",
            "<divx>",
            "<br/>",
            "</P>",
            "<br",
            "</p x=\">\">",
        ];
        let without_whitespace = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let mut seed = 0xB10C_u64;
        for _ in 0..3000 {
            let n = (super::super::tests::xorshift(&mut seed) % 16) as usize;
            let html: String =
                (0..n).map(|_| POOL[(super::super::tests::xorshift(&mut seed) % POOL.len() as u64) as usize]).collect();
            let ours = html_to_text(&html);
            assert_eq!(without_whitespace(&ours), without_whitespace(&inline_text(&html)), "{html:?} → {ours:?}");
            assert!(!ours.contains([super::BLOCK_EDGE, super::LINE_BREAK]), "{html:?} → {ours:?}");
        }
    }

    #[test]
    fn each_block_is_a_line_and_an_empty_one_a_blank_line() {
        let cases = [
            (
                "<div>Hi. I am fine.</div><div><br></div><div>Thanks,</div><div>Alex</div>",
                "Hi. I am fine.\n\nThanks,\nAlex",
            ),
            ("Hello<div>there</div>", "Hello\nthere"),
            ("<ul><li>one</li><li>two</li></ul>after", "one\ntwo\nafter"),
            ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
            ("<p>First</p><p>Second</p>", "First\nSecond\n"),
            ("a<br>b <DIV class=x>  c  </DIV> d", "a\nb\nc\nd"),
            ("<style>div { color: red }</style><div>x</div>", "x"),
            ("no blocks &amp; <b>bold</b>", "no blocks & bold"),
            // mail-parser alone reads "a\nSent:Monday" and "a\nxy".
            ("a<br>\n<b>Sent:</b> Monday<BR/>x", "a\nSent: Monday\nx"),
            ("<div>a</div><b>x</b> y", "a\nx y"),
            ("Zürich</div>", "Zürich"),
        ];
        for (html, text) in cases {
            assert_eq!(html_to_text(html), text, "{html:?}");
        }
    }
}
