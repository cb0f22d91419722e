//! Every reference case produced by scripts/gen_template_cases.py (Python Jinja2 3.1 +
//! PyYAML safe_load) must render byte-for-byte the same and parse to the same JSON.

use std::path::{Path, PathBuf};

use esi_monitor::template::{parse, render, Limits, TemplateError};
use serde_json::{Map, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `template_file` of a stored template record (`body` may be a JSON string).
fn template_source(name: &str) -> String {
    let record = read_json(&fixtures().join("templates").join(format!("{name}.json")));
    let body = &record["value"]["body"];
    let body = match body {
        Value::String(text) => serde_json::from_str(text).expect("body is JSON text"),
        other => other.clone(),
    };
    body["template_file"].as_str().expect("template_file").to_owned()
}

fn case_files() -> Vec<PathBuf> {
    let dir = fixtures().join("template_cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// Checks one case; returns a description of the first difference.
fn check_case(source: &str, case: &Value) -> Result<(), String> {
    let params: Map<String, Value> = case["params"].as_object().cloned().unwrap_or_default();
    let rendered = render(source, &params, &Limits::default());
    if let Some(error) = case.get("render_error") {
        return match rendered {
            Err(TemplateError::Render(_)) => Ok(()),
            other => Err(format!("Python failed to render ({error}), Rust gave {other:?}")),
        };
    }
    let rendered = rendered.map_err(|e| format!("render failed: {e}"))?;
    let expected = case["rendered"].as_str().unwrap_or_default();
    if rendered != expected {
        return Err(format!("rendered text differs\n--- python\n{expected:?}\n--- rust\n{rendered:?}"));
    }
    let parsed = parse(&rendered);
    if let Some(error) = case.get("yaml_error") {
        return match parsed {
            Err(TemplateError::Yaml(_)) => Ok(()),
            other => Err(format!("PyYAML failed ({error}), Rust gave {other:?}")),
        };
    }
    if case["shape_ok"] == Value::Bool(false) {
        return match parsed {
            Err(TemplateError::Shape(_)) => Ok(()),
            other => Err(format!("expected a shape error, Rust gave {other:?}")),
        };
    }
    let parsed = parsed.map_err(|e| format!("parse failed: {e}"))?;
    compare_parsed(&case["parsed"], parsed)
}

/// Objects must come in Python's key order with identical JSON (nested order included);
/// db_mappings must equal Python's `db_mappings` (absent = empty).
fn compare_parsed(expected: &Value, parsed: esi_monitor::template::Rendered) -> Result<(), String> {
    let empty = Map::new();
    let expected = expected.as_object().unwrap_or(&empty);
    let want_objects: Vec<(&String, String)> = expected
        .iter()
        .filter(|(name, _)| name.as_str() != "db_mappings")
        .map(|(name, value)| (name, value.to_string()))
        .collect();
    let got_objects: Vec<(&String, String)> =
        parsed.objects.iter().map(|(name, map)| (name, Value::Object(map.clone()).to_string())).collect();
    if want_objects != got_objects {
        return Err(format!("objects differ\n--- python\n{want_objects:#?}\n--- rust\n{got_objects:#?}"));
    }
    // Compared as text: serde_json's map equality ignores key order.
    let want_mappings = expected.get("db_mappings").cloned().unwrap_or(Value::Array(vec![])).to_string();
    let got_mappings = Value::Array(parsed.db_mappings).to_string();
    if want_mappings != got_mappings {
        return Err(format!("db_mappings differ\n--- python\n{want_mappings}\n--- rust\n{got_mappings}"));
    }
    Ok(())
}

#[test]
fn all_templates_match_python() {
    let files = case_files();
    assert_eq!(files.len(), 23, "expected one case file per template");
    let mut failures = Vec::new();
    let mut count = 0;
    for file in &files {
        let name = file.file_stem().and_then(|s| s.to_str()).expect("file name");
        let source = template_source(name);
        let cases = read_json(file);
        for case in cases.as_array().expect("a list of cases") {
            count += 1;
            if let Err(diff) = check_case(&source, case) {
                failures.push(format!("{name} / {}: {diff}", case["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} cases differ:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn logical_port_emits_db_mappings_twice_last_wins() {
    let source = template_source("ese_logical_port_monitoring");
    let params: Map<String, Value> = serde_json::from_str(
        r#"{"community_name": "C", "device_ip": "10.0.0.1", "name": "xe-0/0/3.1025", "port_ids": ["p1", "p2"]}"#,
    )
    .expect("params");
    let rendered = render(&source, &params, &Limits::default()).expect("render");
    let parsed = parse(&rendered).expect("parse");
    assert_eq!(parsed.objects.len(), 1);
    assert_eq!(parsed.db_mappings.len(), 1);
    assert_eq!(parsed.db_mappings[0]["resource_id"], "p2");
}
