//! The configuration an operator reads is the one the program has: README's reference
//! table and the shipped `packaging/config.yaml` name every key of the configuration
//! structs (no more, no fewer), and the table's defaults are the built-in ones.

use esi_monitor::config::Config;
use serde_json::Value;
use std::collections::BTreeMap;

/// Dotted key → default value, for every leaf of the configuration (maps such as
/// `plurals` are leaves: their entries are the operator's).
fn keys_of(v: &Value, prefix: &str, maps: &[&str], out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !maps.contains(&prefix) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                keys_of(x, &key, maps, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

const MAPS: [&str; 4] = ["plurals", "templates", "monitoring.unreported", "snmp.credentials"];

fn defaults() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    keys_of(&serde_json::to_value(Config::default()).unwrap(), "", &MAPS, &mut out);
    out
}

/// The rows of README's reference table: key → default cell.
fn readme_table() -> BTreeMap<String, String> {
    let readme = include_str!("../README.md");
    let section = readme.split("## Configuration reference").nth(1).expect("README has a configuration reference");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(2)?.trim_matches('`');
            Some((key.to_string(), default.to_string()))
        })
        .collect()
}

#[test]
fn readme_reference_lists_every_key_with_its_default() {
    let defaults = defaults();
    let table = readme_table();
    assert_eq!(
        table.keys().collect::<Vec<_>>(),
        defaults.keys().collect::<Vec<_>>(),
        "README's configuration reference and the configuration structs name different keys"
    );
    for (key, value) in &defaults {
        let shown = match value {
            Value::String(s) if s.is_empty() => "\"\"".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(table[key], shown, "README's default of {key}");
    }
}

#[test]
fn shipped_configuration_names_every_key() {
    let tree: Value = serde_saphyr::from_str(include_str!("../packaging/config.yaml")).unwrap();
    let mut shipped = BTreeMap::new();
    keys_of(&tree, "", &MAPS, &mut shipped);
    assert_eq!(shipped.keys().collect::<Vec<_>>(), defaults().keys().collect::<Vec<_>>());
}
