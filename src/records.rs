//! The records esi-monitor writes (SPEC §3.4–§3.5, §4): job state, `/state`, registry
//! entries and resource-mapping rows, plus Python `json.dumps` text for the strings the
//! original embedded inside `/state`.

use serde_json::{json, Map, Value};

/// `json.dumps(value)` as Python 2/3 prints it by default: separators `", "` and `": "`,
/// ASCII only, key order as given.
pub fn python_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_py(value, &mut out);
    out
}

fn write_py(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(v, out);
            }
            out.push('}');
        }
    }
}

fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The `/state` record of a finished workflow: every job-state key as Python JSON text plus
/// `worker_state`, e.g. `CREATE_COMPLETED` or `CREATE_FAILED`.
pub fn state_record(job_state: &Map<String, Value>, worker_state: &str, version: &Value, error: &str) -> Value {
    let mut state = Map::new();
    for (k, v) in job_state {
        state.insert(k.clone(), Value::String(python_dumps(v)));
    }
    state.insert("worker_state".into(), Value::String(worker_state.into()));
    json!({"error": error, "state": state, "version": version})
}

/// A registry entry: what the poller monitors for one resource.
pub fn registry_record(
    resource_type: &str,
    resource_id: &str,
    version: &Value,
    tenant_id: &Value,
    objects: &[(String, Map<String, Value>)],
) -> Value {
    let objects: Map<String, Value> =
        objects.iter().map(|(name, props)| (name.clone(), Value::Object(props.clone()))).collect();
    json!({"resource_type": resource_type, "resource_id": resource_id, "version": version,
           "tenant_id": tenant_id, "objects": objects})
}

/// A new db_mappings row; `created` is unix seconds.
pub fn mapping_row(id: &str, tenant_id: &Value, mapping: &Mapping, created: u64) -> Value {
    json!({"id": id, "tenant_id": tenant_id, "resource_type": mapping.resource_type,
           "resource_id": mapping.resource_id, "mapped_id": mapping.mapped_id,
           "relation": mapping.relation, "created": created, "deleted": null})
}

/// One `db_mappings` item of a rendered template, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub resource_type: String,
    pub resource_id: String,
    pub mapped_id: String,
    pub relation: String,
}

impl Mapping {
    /// Reads an item; `resource_type`/`resource_id` default to the job's resource.
    pub fn from_item(item: &Value, resource_type: &str, resource_id: &str) -> Result<Mapping, String> {
        let text = |f: &str| -> Option<String> {
            match item.get(f)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let need = |f: &str| text(f).ok_or_else(|| format!("db_mappings item {item} lacks {f:?}"));
        Ok(Mapping {
            mapped_id: need("mapped_id")?,
            relation: need("relation")?,
            resource_type: text("resource_type").unwrap_or_else(|| resource_type.to_string()),
            resource_id: text("resource_id").unwrap_or_else(|| resource_id.to_string()),
        })
    }

    /// True when a stored row is a live row of this mapping.
    pub fn matches_live(&self, row: &Value) -> bool {
        let s = |f: &str| row.get(f).and_then(Value::as_str);
        row.get("deleted").map_or(true, Value::is_null)
            && s("resource_type") == Some(&self.resource_type)
            && s("resource_id") == Some(&self.resource_id)
            && s("mapped_id") == Some(&self.mapped_id)
            && s("relation") == Some(&self.relation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_dumps() {
        let v = json!({"a": [1, "x"], "b": {"c": null, "d": true}, "é": "\u{1F600}\n"});
        assert_eq!(
            python_dumps(&v),
            r#"{"a": [1, "x"], "b": {"c": null, "d": true}, "\u00e9": "\ud83d\ude00\n"}"#
        );
    }

    #[test]
    fn state_record_encodes_every_key() {
        let mut js = Map::new();
        js.insert("heat_outputs".into(), json!([]));
        js.insert("state_monitoring".into(), json!({"downlink": "ACTIVE"}));
        let r = state_record(&js, "CREATE_COMPLETED", &json!(1), "");
        assert_eq!(
            r,
            json!({"error": "", "state": {"heat_outputs": "[]",
                "state_monitoring": "{\"downlink\": \"ACTIVE\"}", "worker_state": "CREATE_COMPLETED"},
                "version": 1})
        );
    }

    #[test]
    fn mapping_defaults_and_matching() {
        let m = Mapping::from_item(&json!({"mapped_id": "m", "relation": "instance"}), "vpn_gateway", "g1").unwrap();
        assert_eq!(m.resource_type, "vpn_gateway");
        let row = mapping_row("id1", &json!("t"), &m, 5);
        assert!(m.matches_live(&row));
        let mut dead = row.clone();
        dead["deleted"] = json!(6);
        assert!(!m.matches_live(&dead));
        assert!(Mapping::from_item(&json!({"relation": "x"}), "a", "b").unwrap_err().contains("mapped_id"));
    }
}
