//! Parsing JSON request bodies into types, with errors that name the offending field
//! (`from.address`, `attachments[1].content_base64`) so API callers can fix their request.

use serde::de::DeserializeOwned;

/// A request body that does not fit: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field; empty for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let inner = e.into_inner();
        let text = inner.to_string();
        let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
        // serde reports a missing or unknown field at its parent: name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let field = match named {
            // serde_path_to_error already puts an unknown field in the path.
            Some(name) if path == name || path.ends_with(&format!(".{name}")) => path,
            Some(name) if path.is_empty() => name.to_owned(),
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        if inner.is_syntax() || inner.is_eof() {
            FieldError::new("", format!("malformed JSON: {text}"))
        } else {
            FieldError::new(field, message)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        from: Inner,
        #[serde(default)]
        list: Vec<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        address: String,
    }

    #[test]
    fn names_the_field() {
        let cases: [(&str, &str); 5] = [
            (r#"{}"#, "from"),
            (r#"{"from": {}}"#, "from.address"),
            (r#"{"from": {"address": 5}}"#, "from.address"),
            (r#"{"from": {"address": "a"}, "list": [{"address": "b"}, {}]}"#, "list[1].address"),
            (r#"{"from": {"address": "a"}, "color": 1}"#, "color"),
        ];
        for (body, field) in cases {
            let e = parse::<Outer>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e:?}");
        }
        let e = parse::<Outer>(b"{not json").unwrap_err();
        assert_eq!(e.field, "");
        assert!(e.message.starts_with("malformed JSON"), "{e:?}");
    }
}

/// Why a request body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    /// A field is missing, mistyped or out of range (400/422).
    Invalid(FieldError),
    /// Something is over a configured size limit (413).
    TooLarge(FieldError),
}

impl From<FieldError> for InputError {
    fn from(e: FieldError) -> Self {
        InputError::Invalid(e)
    }
}

/// An attachment as both the inbound api channel and `POST /v1/messages` take it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub content_base64: String,
    /// An inline part (an image the HTML shows as `cid:<content_id>`), with or without the
    /// angle brackets.
    pub content_id: Option<String>,
}

/// Decodes `attachments[]`, refusing (not dropping) any over `max_bytes`.
pub fn decode_attachments(
    list: Vec<AttachmentBody>,
    max_bytes: usize,
) -> Result<Vec<crate::channels::RawAttachment>, InputError> {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.into_iter().enumerate() {
        let field = format!("attachments[{i}].content_base64");
        let too_large =
            || InputError::TooLarge(FieldError::new(&field, format!("attachment is larger than {max_bytes} bytes")));
        // The decoded size is at most 3/4 of the encoded length: refuse before decoding a giant.
        if a.content_base64.len() / 4 * 3 > max_bytes + 3 {
            return Err(too_large());
        }
        let bytes = B64
            .decode(a.content_base64.as_bytes())
            .map_err(|e| FieldError::new(&field, format!("not valid base64: {e}")))?;
        if bytes.len() > max_bytes {
            return Err(too_large());
        }
        let content_type =
            a.content_type.filter(|c| !c.is_empty()).unwrap_or_else(|| "application/octet-stream".to_owned());
        if !content_type.contains('/') || content_type.len() > 255 {
            return Err(FieldError::new(
                format!("attachments[{i}].content_type"),
                "must be a MIME type like image/png",
            )
            .into());
        }
        let content_id = match a.content_id.as_deref().map(|c| c.trim().trim_start_matches('<').trim_end_matches('>')) {
            None => None,
            // RFC 5322 msg-id characters: printable ASCII without space, brackets or quotes.
            Some(c)
                if !c.is_empty()
                    && c.len() <= 200
                    && c.bytes().all(|b| b.is_ascii_graphic() && !b"<>\"\\".contains(&b)) =>
            {
                Some(c.to_owned())
            }
            Some(_) => {
                return Err(FieldError::new(
                    format!("attachments[{i}].content_id"),
                    "must be 1-200 printable ASCII characters without spaces, brackets or quotes",
                )
                .into())
            }
        };
        out.push(crate::channels::RawAttachment {
            sha256: None,
            filename: a.filename,
            content_id,
            content_type,
            bytes: bytes.into(),
        });
    }
    Ok(out)
}
