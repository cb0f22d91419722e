//! The job model of SPEC §2.1: parsing a `/jobs/all` entry, deciding when it may run, and
//! resolving its parameters (§3.1) into the variables its template is rendered with.

use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use crate::store::StoreError;
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Delete,
    Other(String),
}

impl Action {
    pub fn upper(&self) -> String {
        match self {
            Action::Create => "CREATE".into(),
            Action::Delete => "DELETE".into(),
            Action::Other(a) => a.to_uppercase(),
        }
    }
}

/// A monitoring job as read from `/jobs/all/<id>`. The params stay JSON text until the job
/// runs, so a large backlog of waiting jobs costs little memory.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub handler: String,
    pub job_name: String,
    pub action: Action,
    pub resource_type: String,
    pub resource_id: String,
    /// The config version, echoed as read into `/state` and the registry.
    pub version: Value,
    pub is_first: bool,
    pub is_last: bool,
    pub ignore_failure: bool,
    pub dependency: Vec<String>,
    /// The `params` list as JSON text; `None` when the job has none (executing it fails,
    /// on_failure applies).
    params: Option<String>,
    /// `resource_input.tenant_id`, used for the mapping rows and the registry.
    pub tenant_id: Value,
}

impl Job {
    /// The params list.
    pub fn params(&self) -> Option<Vec<Value>> {
        serde_json::from_str(self.params.as_deref()?).ok()
    }
}

type Fields<'a> = HashMap<String, &'a RawValue>;

/// Parses a `/jobs/all/<id>` value `[handler, job, n]`. The error says what is wrong; such a
/// job is left in place and reported, never executed.
pub fn parse(id: &str, raw: &[u8]) -> Result<Job, String> {
    let (handler, body, _n): (Value, &RawValue, IgnoredAny) = serde_json::from_slice(raw).map_err(|e| {
        match serde_json::from_slice::<IgnoredAny>(raw) {
            Err(syntax) => format!("job {id}: value is not JSON ({syntax})"),
            Ok(_) => format!("job {id}: value is not a [handler, job, n] array ({e})"),
        }
    })?;
    let handler = handler
        .as_str()
        .ok_or_else(|| format!("job {id}: the handler (first element) is not a string"))?;
    let body: Fields = serde_json::from_str(body.get())
        .map_err(|_| format!("job {id}: the job (second element) is not an object"))?;
    let field = |name: &str| -> Option<Value> {
        body.get(name).and_then(|raw| serde_json::from_str(raw.get()).ok())
    };
    let text = |name: &str| -> Result<String, String> {
        match field(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!("job {id}: field {name:?} is not a string but {}", kind(&other))),
            None => Err(format!("job {id}: field {name:?} is missing")),
        }
    };
    let flag = |name: &str| field(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let action = match text("action")?.as_str() {
        "create" => Action::Create,
        "delete" => Action::Delete,
        other => Action::Other(other.to_string()),
    };
    let dependency = match field("dependency") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(deps)) => deps
            .into_iter()
            .map(|d| d.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("job {id}: field \"dependency\" holds a non-string"))?,
        Some(_) => return Err(format!("job {id}: field \"dependency\" is not a list")),
    };
    let params = body.get("params").map(|raw| raw.get()).filter(|t| t.trim_start().starts_with('['));
    let tenant_id = body
        .get("resource_input")
        .and_then(|raw| serde_json::from_str::<TenantOnly>(raw.get()).ok())
        .and_then(|r| r.tenant_id)
        .unwrap_or(Value::Null);
    Ok(Job {
        id: id.to_string(),
        handler: handler.to_string(),
        job_name: text("job_name")?,
        action,
        resource_type: text("resource_type")?,
        resource_id: text("resource_id")?,
        version: field("version").unwrap_or(Value::Null),
        is_first: flag("is_first"),
        is_last: flag("is_last"),
        ignore_failure: field("on_failure").and_then(|v| v.as_str().map(|s| s == "ignore")).unwrap_or(false),
        dependency,
        params: params.map(str::to_string),
        tenant_id,
    })
}

/// The one field of `resource_input` the worker uses.
#[derive(serde::Deserialize)]
struct TenantOnly {
    tenant_id: Option<Value>,
}

/// The JSON kind of a value, for messages that must not show the value itself.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Where the heat outputs of another resource are looked up (job state, then `/state`).
pub trait Outputs {
    /// The heat outputs list of a resource, `None` when it has none recorded.
    fn heat_outputs(&mut self, resource_type: &str, resource_id: &str) -> Result<Option<Vec<Value>>, StoreError>;
}

/// Why params did not resolve.
#[derive(Debug)]
pub enum ParamError {
    /// A param cannot be resolved: the job fails (SPEC §2.4) with this sentence.
    Unresolved(String),
    /// etcd could not be asked for the heat outputs: that says nothing about the job, which
    /// waits and runs again.
    Unread(StoreError),
}

impl From<String> for ParamError {
    fn from(why: String) -> ParamError {
        ParamError::Unresolved(why)
    }
}

/// Resolves a job's params into template variables.
pub fn resolve_params(params: &[Value], outputs: &mut dyn Outputs) -> Result<Map<String, Value>, ParamError> {
    let mut vars = Map::new();
    for (i, p) in params.iter().enumerate() {
        let name = p
            .get("param")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("param #{i} has no \"param\" name"))?;
        vars.insert(name.to_string(), resolve_one(name, p, outputs)?);
    }
    Ok(vars)
}

fn resolve_one(name: &str, p: &Value, outputs: &mut dyn Outputs) -> Result<Value, ParamError> {
    let value = p.get("value").cloned().unwrap_or(Value::Null);
    match p.get("type").and_then(Value::as_str).unwrap_or("value") {
        "value" => Ok(value),
        "output_key" => resolve_output_key(name, &value, outputs),
        "list" => match value {
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let inner = item.get("param").and_then(Value::as_str).unwrap_or(name);
                    resolve_one(inner, item, outputs)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Null => Ok(Value::Array(Vec::new())),
            // The kind, never the value: params carry passwords and communities.
            other => Err(format!("param {name:?} of type list holds {} instead of a list", kind(&other)).into()),
        },
        other => Err(format!("param {name:?} has unknown type {other:?}").into()),
    }
}

fn resolve_output_key(name: &str, v: &Value, outputs: &mut dyn Outputs) -> Result<Value, ParamError> {
    let field = |f: &str| {
        v.get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| ParamError::Unresolved(format!("param {name:?}: output_key reference lacks {f:?}")))
    };
    let (key, rtype, rid) = (field("output_key")?, field("resource_type")?, field("resource_id")?);
    let list = outputs
        .heat_outputs(rtype, rid)
        .map_err(|e| match e.unavailable() {
            Some(_) => ParamError::Unread(e),
            // etcd's final answer (permission denied, …): the param cannot be resolved.
            None => ParamError::Unresolved(format!("param {name:?}: {e}")),
        })?
        .ok_or_else(|| format!("param {name:?}: no heat outputs recorded for {rtype} {rid}"))?;
    Ok(list
        .iter()
        .find(|o| o.get("output_key").and_then(Value::as_str) == Some(key))
        .map(|o| o.get("output_value").cloned().unwrap_or(Value::Null))
        .ok_or_else(|| format!("param {name:?}: {rtype} {rid} has no heat output {key:?}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed(Option<Vec<Value>>);
    impl Outputs for Fixed {
        fn heat_outputs(&mut self, _: &str, _: &str) -> Result<Option<Vec<Value>>, StoreError> {
            Ok(self.0.clone())
        }
    }

    /// etcd failing every read with `cause`.
    struct Failing(crate::store::Cause);
    impl Outputs for Failing {
        fn heat_outputs(&mut self, _: &str, _: &str) -> Result<Option<Vec<Value>>, StoreError> {
            Err(StoreError::new(self.0, "etcd get /esi-worker/job_state/v2.0/ports/p9: etcdserver: leader changed"))
        }
    }

    fn unresolved(r: Result<Map<String, Value>, ParamError>) -> String {
        match r {
            Err(ParamError::Unresolved(why)) => why,
            other => panic!("expected an unresolved param, got {other:?}"),
        }
    }

    fn entry(params: Value) -> Vec<u8> {
        json!(["monitoring_worker", {"id": "create:monitoring_worker:port:p1:1:abc",
            "job_name": "port:p1:1", "action": "create", "resource_type": "port",
            "resource_id": "p1", "version": 1, "is_first": false, "is_last": true,
            "on_failure": "fail", "dependency": ["x"], "params": params,
            "resource_input": {"tenant_id": "t"}}, 0])
        .to_string()
        .into_bytes()
    }

    #[test]
    fn parses_a_recorded_shape() {
        let j = parse("create:monitoring_worker:port:p1:1:abc", &entry(json!([]))).unwrap();
        assert_eq!(j.action, Action::Create);
        assert!(j.is_last && !j.is_first && !j.ignore_failure);
        assert_eq!(j.dependency, vec!["x".to_string()]);
        assert_eq!(j.tenant_id, json!("t"));
        assert_eq!(j.params(), Some(vec![]));
    }

    #[test]
    fn rejects_non_json_and_wrong_shapes() {
        assert!(parse("a", b"{nope").unwrap_err().contains("not JSON"));
        assert!(parse("a", b"{}").unwrap_err().contains("array"));
        assert!(parse("a", br#"["h", [], 0]"#).unwrap_err().contains("not an object"));
        assert!(parse("a", br#"["h", {"id": "a"}, 0]"#).unwrap_err().contains("\"action\" is missing"));
        assert!(parse("a", br#"["h", {"action": "create"}, 0]"#).unwrap_err().contains("\"job_name\" is missing"));
    }

    #[test]
    fn resolves_value_output_key_and_list() {
        let outs = vec![json!({"output_key": "fq_name", "output_value": "d:a:p1"})];
        let params = vec![
            json!({"param": "a", "type": "value", "value": null}),
            json!({"param": "fq", "type": "output_key",
                   "value": {"output_key": "fq_name", "resource_type": "port", "resource_id": "p1"}}),
            json!({"param": "l", "type": "list", "value": [
                {"param": "l", "type": "output_key",
                 "value": {"output_key": "fq_name", "resource_type": "port", "resource_id": "p1"}},
                {"param": "l", "type": "value", "value": 3}]}),
        ];
        let vars = resolve_params(&params, &mut Fixed(Some(outs))).unwrap();
        assert_eq!(Value::Object(vars), json!({"a": null, "fq": "d:a:p1", "l": ["d:a:p1", 3]}));
    }

    #[test]
    fn unresolvable_output_key_is_named() {
        let params = vec![json!({"param": "fq", "type": "output_key",
            "value": {"output_key": "fq_name", "resource_type": "port", "resource_id": "p9"}})];
        let e = unresolved(resolve_params(&params, &mut Fixed(None)));
        assert!(e.contains("fq") && e.contains("p9"), "{e}");
        let e = unresolved(resolve_params(&params, &mut Fixed(Some(vec![]))));
        assert!(e.contains("fq_name"), "{e}");
    }

    #[test]
    fn an_unavailable_etcd_leaves_the_param_unread_and_a_final_answer_unresolved() {
        use crate::store::{Cause, Unavailable};
        let params = vec![json!({"param": "fq", "type": "output_key",
            "value": {"output_key": "fq_name", "resource_type": "port", "resource_id": "p9"}})];
        let r = resolve_params(&params, &mut Failing(Cause::Unavailable(Unavailable::Election)));
        assert!(matches!(r, Err(ParamError::Unread(ref e)) if e.message.contains("leader changed")), "{r:?}");
        let e = unresolved(resolve_params(&params, &mut Failing(Cause::Refused)));
        assert!(e.starts_with("param \"fq\": etcd get"), "{e}");
    }
}
