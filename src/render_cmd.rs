//! `esi-monitor render`: renders a template with given params, offline, the way a job would,
//! so operators can debug templates without etcd.

use crate::job::{resolve_params, Outputs, ParamError};
use crate::store::{Cause, StoreError};
use crate::plugins::Object;
use crate::template::{render_objects, Limits};
use serde_json::{json, Map, Value};
use std::path::Path;

struct NoOutputs;

impl Outputs for NoOutputs {
    fn heat_outputs(&mut self, rtype: &str, rid: &str) -> Result<Option<Vec<Value>>, StoreError> {
        let why = format!("output_key params need etcd ({rtype} {rid}); give the value directly");
        Err(StoreError::new(Cause::Refused, why))
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The Jinja2 text of a template file: plain text, or a stored heat_templates record.
pub fn template_text(text: &str) -> Result<String, String> {
    let Ok(record) = serde_json::from_str::<Value>(text) else { return Ok(text.to_string()) };
    let record = record.get("value").cloned().unwrap_or(record);
    let body = match record.get("body") {
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| format!("body is not JSON: {e}"))?,
        Some(b) => b.clone(),
        None => record.clone(),
    };
    body.get("template_file")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "the JSON template has no body.template_file".to_string())
}

/// Renders and prints `{"objects": …, "db_mappings": …}` as pretty JSON.
pub fn run(template: &Path, params: &Path) -> Result<(), String> {
    let source = template_text(&read(template)?).map_err(|e| format!("{}: {e}", template.display()))?;
    let params_value: Value = serde_json::from_str(&read(params)?)
        .map_err(|e| format!("{}: not JSON: {e}", params.display()))?;
    let vars: Map<String, Value> = match params_value {
        Value::Object(m) => m,
        Value::Array(list) => resolve_params(&list, &mut NoOutputs).map_err(|e| match e {
            ParamError::Unresolved(why) => format!("{}: {why}", params.display()),
            ParamError::Unread(e) => format!("{}: {e}", params.display()),
        })?,
        _ => return Err(format!("{}: params must be an object or a list", params.display())),
    };
    let rendered = render_objects(&source, &vars, &Limits::default()).map_err(|e| e.to_string())?;
    let mut objects = Map::new();
    for (name, props) in &rendered.objects {
        Object::check(name, props)?;
        objects.insert(name.clone(), Value::Object(props.clone()));
    }
    let out = json!({"objects": objects, "db_mappings": rendered.db_mappings});
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
