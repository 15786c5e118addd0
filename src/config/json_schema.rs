//! A JSON Schema (draft 2020-12) of `.daft.toml` and `launch.toml`, made from the same key list
//! as the shape check and the templates (`schema::KEYS`, `launch::LAUNCH_KEYS`): editors that
//! read JSON Schemas for TOML (VS Code with Even Better TOML, taplo) complete and check keys as
//! the user types. The located errors of `daft plan` stay the authority on values.

use serde_json::{json, Map, Value};

use super::schema::{Key, Ty};

/// The schema of a file whose keys are `keys`.
pub fn json_schema(keys: &[Key], title: &str, description: &str) -> Value {
    let mut root = table(keys, "");
    if let Value::Object(m) = &mut root {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        m.insert("title".into(), json!(title));
        m.insert("description".into(), json!(description));
    }
    root
}

/// The object schema of the table at `path` ("" for the top level): its keys, which are
/// required, nothing else allowed.
fn table(keys: &[Key], path: &str) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for k in keys.iter().filter(|k| k.parent == path) {
        let child = if path.is_empty() {
            k.name.to_string()
        } else {
            format!("{path}.{}", k.name)
        };
        let mut v = value(keys, k.ty, &child);
        if let Value::Object(m) = &mut v {
            // The template's example, as TOML text (what a user would write).
            m.insert(
                "description".into(),
                json!(format!("e.g. {} = {}", k.name, k.example)),
            );
        }
        props.insert(k.name.to_string(), v);
        if k.required {
            required.push(json!(k.name));
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        m.insert("required".into(), Value::Array(required));
    }
    m.insert("additionalProperties".into(), json!(false));
    Value::Object(m)
}

fn value(keys: &[Key], ty: Ty, path: &str) -> Value {
    match ty {
        Ty::Table => table(keys, path),
        Ty::Tables => json!({ "type": "array", "items": table(keys, path) }),
        Ty::Str => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Num => json!({ "type": "number" }),
        Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::StrMap => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        Ty::NumMap => json!({ "type": "object", "additionalProperties": { "type": "number" } }),
        // Named presets of `[setup.slurm]` settings: each a table of that section's keys.
        Ty::Presets => json!({
            "type": "object",
            "additionalProperties": table(keys, "setup.slurm"),
        }),
        // The sweep table is checked by the sweep loader (its axes are the user's names).
        Ty::Sweep => json!({ "type": "object" }),
    }
}

/// `.daft.toml`'s schema.
pub fn cluster_schema() -> Value {
    json_schema(
        super::KEYS,
        "daft cluster configuration (.daft.toml)",
        "A Ray cluster on AWS EC2, SSH hosts, this machine, Slurm or Kubernetes; see the README's Configuration section.",
    )
}

/// `launch.toml`'s schema.
pub fn launch_schema() -> Value {
    json_schema(
        super::launch::LAUNCH_KEYS,
        "daft launch job (launch.toml)",
        "A job built into an image and run on Kubernetes by `daft launch`.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tables_required_keys_and_types_follow_the_key_list() {
        let s = cluster_schema();
        assert_eq!(s["required"], json!(["setup"]));
        let setup = &s["properties"]["setup"];
        assert_eq!(setup["additionalProperties"], json!(false));
        assert!(setup["required"]
            .as_array()
            .unwrap()
            .contains(&json!("name")));
        let aws = &setup["properties"]["aws"]["properties"];
        assert_eq!(aws["max_hourly_cost"]["type"], "number");
        assert_eq!(aws["zones"]["items"]["type"], "string");
        let group = &aws["worker_groups"]["items"]["properties"];
        assert_eq!(group["spot_fallback"]["type"], "boolean");
        assert_eq!(group["resources"]["additionalProperties"]["type"], "number");
        // Every listed key is in the schema, at its place.
        for k in super::super::KEYS {
            let mut at = &s;
            for part in k.parent.split('.').filter(|p| !p.is_empty()) {
                at = &at["properties"][part];
                if at["type"] == "array" {
                    at = &at["items"];
                }
            }
            assert!(
                at["properties"].get(k.name).is_some(),
                "{}.{} missing",
                k.parent,
                k.name
            );
        }
    }
}
