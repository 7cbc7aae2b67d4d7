//! SPEC §13: `/openapi.json` documents `/sync/{work}` and `/async/{work}`, and, for each
//! work with an `input_schema`, `/sync/NAME` and `/async/NAME` with that schema as the
//! body (for async, with the `callback_url` it also needs). Added to the generated
//! document at start, from the works this instance serves.

use serde_json::{Value, json};

use crate::works::Registry;

/// Adds the concrete routes of every schema'd work to `doc` (an OpenAPI 3.1 document).
pub fn document_works(doc: &mut Value, works: &Registry) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let generic = [
        ("sync", paths.get("/sync/{work}").cloned()),
        ("async", paths.get("/async/{work}").cloned()),
    ];
    for name in works.names() {
        let Some(schema) = works
            .named(name)
            .and_then(|w| w.settings.input_schema.as_ref())
        else {
            continue;
        };
        for (mode, item) in &generic {
            let Some(mut item) = item.clone() else {
                continue;
            };
            let body = match *mode {
                "async" => with_callback(schema.document()),
                _ => schema.document().clone(),
            };
            concrete(&mut item, name, body);
            paths.insert(format!("/{mode}/{name}"), item);
        }
    }
}

/// The generic operation made the work's own: no `work` parameter, its schema as body.
fn concrete(item: &mut Value, name: &str, body: Value) {
    let Some(post) = item.get_mut("post") else {
        return;
    };
    if let Some(params) = post.get_mut("parameters").and_then(Value::as_array_mut) {
        params.retain(|p| p["name"] != "work");
    }
    if let Some(id) = post.get("operationId").and_then(Value::as_str) {
        post["operationId"] = json!(format!("{id}_{}", name.replace('-', "_")));
    }
    post["summary"] = json!(format!("Run the work `{name}`"));
    post["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {"schema": body}},
    });
}

/// The input schema plus the `callback_url` an async request carries beside the input.
fn with_callback(schema: &Value) -> Value {
    json!({
        "allOf": [
            schema,
            {
                "type": "object",
                "required": ["callback_url"],
                "properties": {"callback_url": {"type": "string", "format": "uri", "maxLength": 2048}},
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::works::WorksBuilder;

    #[test]
    fn each_schemad_work_gets_its_own_routes() {
        let spec = "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninput_schema = { type = \"object\", required = [\"doc\"] }\n\n[works.plain]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
        let specs =
            crate::works::file::parse(std::path::Path::new("w.toml"), spec, |_| None).unwrap();
        let works = WorksBuilder::new().specs(specs).build().unwrap();
        let mut doc = serde_json::to_value(crate::http::openapi()).unwrap();
        document_works(&mut doc, &works);
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/sync/{work}") && paths.contains_key("/async/{work}"));
        assert!(
            !paths.contains_key("/sync/plain"),
            "no schema, no own route"
        );
        let sync = &paths["/sync/pdf"]["post"];
        let body = &sync["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["required"][0], "doc");
        let params = sync["parameters"].as_array().map_or(0, Vec::len);
        let generic = paths["/sync/{work}"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(params + 1, generic, "the work parameter is gone");
        let async_body =
            &paths["/async/pdf"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(async_body["allOf"][0]["required"][0], "doc");
        assert_eq!(async_body["allOf"][1]["required"][0], "callback_url");
    }
}
