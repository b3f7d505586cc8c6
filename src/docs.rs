//! The public contract documents kept in `docs/`: the OpenAPI 3.1 description of the HTTP API and
//! the JSON Schemas of the event envelope and the objects it carries. The served OpenAPI document
//! embeds the schemas, so each is written once.

use std::sync::OnceLock;

use serde_json::Value;

pub const OPENAPI: &str = include_str!("../docs/openapi.json");
pub const SCHEMAS: [(&str, &str); 4] = [
    ("Event", include_str!("../docs/schemas/event.json")),
    ("Message", include_str!("../docs/schemas/message.json")),
    ("Conversation", include_str!("../docs/schemas/conversation.json")),
    ("Contact", include_str!("../docs/schemas/contact.json")),
];

/// The OpenAPI document with `components.schemas` filled from the schema files.
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is valid JSON");
        for (name, text) in SCHEMAS {
            let mut schema: Value = serde_json::from_str(text).expect("schema files are valid JSON");
            if let Some(obj) = schema.as_object_mut() {
                obj.remove("$schema");
                obj.remove("$id");
            }
            doc["components"]["schemas"][name] = schema;
        }
        // Schema files refer to each other by file name; inside the document they are components.
        let text = doc.to_string();
        SCHEMAS.iter().fold(text, |t, (name, _)| {
            let file = format!("\"{}.json\"", name.to_lowercase());
            t.replace(&file, &format!("\"#/components/schemas/{name}\""))
        })
    })
}
