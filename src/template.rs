//! Monitoring templates: Jinja2 text → YAML text → monitored objects and db_mappings.
//!
//! Why this module exists: the original worker rendered each `<type>_monitoring` template
//! with Python Jinja2 and read the result with PyYAML's `yaml.safe_load`. The objects it
//! monitors (and the db_mappings it writes) are whatever those two libraries made of the
//! text, so this module reproduces both behaviours exactly: minijinja configured like a
//! default `jinja2.Environment()` (lenient undefined, no auto-escape, one trailing newline
//! stripped, Python `str()` of values, the `match` filter), and serde-saphyr with YAML 1.1
//! scalar resolution and "last key wins" mappings on top. Rendering is bounded (fuel and
//! output size), so a hostile template fails its job instead of the worker.
//!
//! Reference cases generated with Python live in `tests/fixtures/template_cases/`.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, State};
use regex_lite::Regex;
use serde_json::{Map, Value as Json};

/// Bounds applied to one rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja fuel: roughly the number of executed instructions.
    pub fuel: u64,
    /// Largest accepted output, in bytes.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: 1_000_000, max_output: 1024 * 1024 }
    }
}

/// A parsed template result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// Monitored objects in template order; every map holds a string `"type"`.
    pub objects: Vec<(String, Map<String, Json>)>,
    /// The `db_mappings` list (empty when the template has none).
    pub db_mappings: Vec<Json>,
}

/// Why a template could not be turned into objects.
#[derive(Debug)]
pub enum TemplateError {
    /// Jinja2 syntax or evaluation error (including the fuel limit).
    Render(String),
    /// The rendered text is not valid YAML (as PyYAML's safe_load sees it).
    Yaml(String),
    /// Valid YAML, but not the `name → {type, …}` / `db_mappings` layout.
    Shape(String),
    /// The rendered output exceeded this many bytes.
    TooLarge(usize),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Render(m) => write!(f, "template rendering failed: {m}"),
            TemplateError::Yaml(m) => write!(f, "rendered template is not valid YAML: {m}"),
            TemplateError::Shape(m) => write!(f, "rendered template has the wrong layout: {m}"),
            TemplateError::TooLarge(n) => {
                write!(f, "rendered template exceeds the output limit of {n} bytes")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// Renders `source` with `params` as Python Jinja2 (default environment) would.
pub fn render(source: &str, params: &Map<String, Json>, limits: &Limits) -> Result<String, TemplateError> {
    let source = guard_loops(&normalize_newlines(source));
    let env = environment(limits);
    let template = env
        .template_from_named_str("template", &source)
        .map_err(|e| TemplateError::Render(describe_jinja_error(&e)))?;
    let mut out = BoundedWriter { buf: Vec::new(), max: limits.max_output, overflowed: false };
    let result = template.render_captured_to(context(params), &mut out).map(drop);
    match result {
        Ok(()) => String::from_utf8(out.buf)
            .map_err(|_| TemplateError::Render("output is not valid UTF-8".into())),
        Err(_) if out.overflowed => Err(TemplateError::TooLarge(limits.max_output)),
        Err(e) => Err(TemplateError::Render(describe_jinja_error(&e))),
    }
}

/// Parses rendered text as PyYAML's `safe_load` would, then splits it into objects and
/// db_mappings.
pub fn parse(yaml_text: &str) -> Result<Rendered, TemplateError> {
    if yaml_text.trim().is_empty() {
        return Ok(Rendered::default());
    }
    match yaml::load(yaml_text)? {
        Json::Null => Ok(Rendered::default()),
        Json::Object(top) => split_objects(top),
        other => Err(TemplateError::Shape(format!(
            "the top level must be a mapping of objects, found {}",
            json_kind(&other)
        ))),
    }
}

/// [`render`] followed by [`parse`].
pub fn render_objects(
    source: &str,
    params: &Map<String, Json>,
    limits: &Limits,
) -> Result<Rendered, TemplateError> {
    parse(&render(source, params, limits)?)
}

// ------------------------------------------------------------------------- shape

fn split_objects(top: Map<String, Json>) -> Result<Rendered, TemplateError> {
    let mut rendered = Rendered::default();
    for (name, value) in top {
        if name == "db_mappings" {
            match value {
                Json::Array(items) => rendered.db_mappings = items,
                other => {
                    return Err(TemplateError::Shape(format!(
                        "db_mappings must be a list, found {}",
                        json_kind(&other)
                    )))
                }
            }
            continue;
        }
        let object = match value {
            Json::Object(map) => map,
            other => {
                return Err(TemplateError::Shape(format!(
                    "object `{name}` must be a mapping, found {}",
                    json_kind(&other)
                )))
            }
        };
        if !matches!(object.get("type"), Some(Json::String(_))) {
            return Err(TemplateError::Shape(format!("object `{name}` has no string `type`")));
        }
        rendered.objects.push((name, object));
    }
    Ok(rendered)
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

// ------------------------------------------------------------------------- rendering

/// Jinja2's lexer turns `\r\n` and `\r` into `\n` in template data and string literals.
fn normalize_newlines(source: &str) -> String {
    source.replace("\r\n", "\n").replace('\r', "\n")
}

/// Name of the filter [`guard_loops`] inserts.
const ITERABLE_FILTER: &str = "esi_python_iterable";

/// Python raises `TypeError: 'NoneType' object is not iterable` for `{% for x in none %}`
/// where minijinja loops zero times. Loops over a plain variable or attribute path get a
/// pass-through filter that raises the same error, so such a job fails as it did in
/// Python. Templates with `{% raw %}` are left alone (the text there must stay as is).
fn guard_loops(source: &str) -> String {
    static PATTERNS: OnceLock<Option<(Regex, Regex)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        let raw = Regex::new(r"\{%-?\s*raw\b").ok()?;
        let for_loop = Regex::new(concat!(
            r"(\{%-?\s*for\s+[A-Za-z_][A-Za-z0-9_,\s]*?\s+in\s+)",
            r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)",
            r"(\s*(?:-?%\}|if\s|recursive\s))",
        ))
        .ok()?;
        Some((raw, for_loop))
    });
    match patterns {
        Some((raw, for_loop)) if !raw.is_match(source) => for_loop
            .replace_all(source, format!("${{1}}${{2}}|{ITERABLE_FILTER}${{3}}"))
            .into_owned(),
        _ => source.to_owned(),
    }
}

/// The filter [`guard_loops`] inserts: passes the value through, rejects `None`.
fn python_iterable(value: Value) -> Result<Value, JinjaError> {
    if value.is_none() {
        return Err(JinjaError::new(ErrorKind::InvalidOperation, "'NoneType' object is not iterable"));
    }
    Ok(value)
}

fn environment(limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(limits.fuel));
    env.set_formatter(format_value);
    env.add_filter("match", match_filter);
    env.add_filter("replace", replace_filter);
    env.add_filter(ITERABLE_FILTER, python_iterable);
    env
}

/// Writes `{{ value }}` as Python's `str(value)`; undefined renders empty.
fn format_value(out: &mut minijinja::Output, _: &State, value: &Value) -> Result<(), JinjaError> {
    if value.is_undefined() {
        return Ok(());
    }
    let mut text = String::new();
    python::write_str(&mut text, value);
    out.write_str(&text).map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "write failed"))
}

/// `value | match(pattern)`: Python `re.match(pattern, value) is not None`.
fn match_filter(value: &Value, pattern: &str) -> Result<bool, JinjaError> {
    let Some(text) = value.as_str() else {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("match expects a string, got {}", python::type_name(value)),
        ));
    };
    let regex = regex_lite::Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
        JinjaError::new(ErrorKind::InvalidOperation, format!("bad match pattern {pattern:?}: {e}"))
    })?;
    Ok(regex.is_match(text))
}

/// `s | replace(old, new[, count])`: Python's `str(s).replace(str(old), str(new), count)`.
fn replace_filter(value: &Value, old: &Value, new: &Value, count: Option<i64>) -> String {
    let (text, old, new) = (python::str(value), python::str(old), python::str(new));
    match count {
        Some(n) if n >= 0 => text.replacen(&old, &new, n as usize),
        _ => text.replace(&old, &new),
    }
}

fn describe_jinja_error(error: &JinjaError) -> String {
    if error.kind() == ErrorKind::OutOfFuel {
        return format!("the template runs too long ({error})");
    }
    error.to_string()
}

/// Turns the params into the template context, keeping ints, floats and key order.
fn context(params: &Map<String, Json>) -> Value {
    Value::from_iter(params.iter().map(|(k, v)| (k.as_str(), to_value(v))))
}

fn to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_iter(map.iter().map(|(k, v)| (k.as_str(), to_value(v)))),
    }
}

/// Collects the output and refuses to grow past `max` bytes (which aborts rendering).
struct BoundedWriter {
    buf: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.overflowed = true;
            return Err(io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Python's `str()` / `repr()` of template values.
mod python {
    use super::{Value, ValueKind};
    use std::fmt::Write as _;

    pub fn str(value: &Value) -> String {
        let mut out = String::new();
        write_str(&mut out, value);
        out
    }

    /// `str(value)`: strings as they are, everything else as `repr`.
    pub fn write_str(out: &mut String, value: &Value) {
        match value.as_str() {
            Some(s) if value.kind() == ValueKind::String => out.push_str(s),
            _ => write_repr(out, value),
        }
    }

    pub fn write_repr(out: &mut String, value: &Value) {
        match value.kind() {
            ValueKind::Undefined => {}
            ValueKind::None => out.push_str("None"),
            ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
            ValueKind::Number if !value.is_integer() => {
                out.push_str(&float_repr(f64::try_from(value.clone()).unwrap_or(f64::NAN)))
            }
            ValueKind::String => write_str_repr(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => write_seq(out, value),
            ValueKind::Map => write_map(out, value),
            _ => {
                let _ = write!(out, "{value}");
            }
        }
    }

    fn write_seq(out: &mut String, value: &Value) {
        out.push('[');
        if let Ok(items) = value.try_iter() {
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &item);
            }
        }
        out.push(']');
    }

    fn write_map(out: &mut String, value: &Value) {
        out.push('{');
        if let Ok(keys) = value.try_iter() {
            for (i, key) in keys.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &key);
                out.push_str(": ");
                write_repr(out, &value.get_item(&key).unwrap_or_default());
            }
        }
        out.push('}');
    }

    /// Python's name of a value's type, for error messages.
    pub fn type_name(value: &Value) -> &'static str {
        match value.kind() {
            ValueKind::Undefined => "Undefined",
            ValueKind::None => "NoneType",
            ValueKind::Bool => "bool",
            ValueKind::Number if value.is_integer() => "int",
            ValueKind::Number => "float",
            ValueKind::String => "str",
            ValueKind::Seq | ValueKind::Iterable => "list",
            ValueKind::Map => "dict",
            _ => "object",
        }
    }

    /// Python 3 `repr(str)`: single quotes unless the text has `'` and no `"`.
    pub fn write_str_repr(out: &mut String, s: &str) {
        let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
        out.push(quote);
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                c if is_printable(c) => out.push(c),
                c if (c as u32) < 0x100 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
        }
        out.push(quote);
    }

    /// Approximates Python's `str.isprintable` (controls, separators, format chars).
    fn is_printable(c: char) -> bool {
        let u = c as u32;
        !(c.is_control()
            || matches!(u, 0xA0 | 0xAD | 0x1680 | 0x180E | 0x3000 | 0xFEFF)
            || (0x2000..=0x200F).contains(&u)
            || (0x2028..=0x202F).contains(&u)
            || (0x205F..=0x206F).contains(&u)
            || (0xE000..=0xF8FF).contains(&u)
            || (0xFFF9..=0xFFFB).contains(&u))
    }

    /// Python's `repr(float)`: shortest round-trip digits, scientific outside 1e-4..1e16.
    pub fn float_repr(f: f64) -> String {
        if f.is_nan() {
            return "nan".into();
        }
        if f.is_infinite() {
            return if f > 0.0 { "inf".into() } else { "-inf".into() };
        }
        let sci = format!("{:e}", f.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
        let sign = if f.is_sign_negative() { "-" } else { "" };
        if (-4..16).contains(&exp) {
            format!("{sign}{}", fixed_notation(&digits, exp))
        } else {
            let (first, rest) = digits.split_at(1);
            let dot = if rest.is_empty() { String::new() } else { format!(".{rest}") };
            let esign = if exp < 0 { '-' } else { '+' };
            format!("{sign}{first}{dot}e{esign}{:02}", exp.abs())
        }
    }

    fn fixed_notation(digits: &str, exp: i32) -> String {
        if exp < 0 {
            return format!("0.{}{digits}", "0".repeat((-exp - 1) as usize));
        }
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    }
}

// ------------------------------------------------------------------------- YAML

/// `yaml.safe_load` on top of serde-saphyr: the parser gives the tree, PyYAML's YAML 1.1
/// resolver (re-implemented here) decides what each plain scalar means.
mod yaml {
    use super::{python, Json, Map, OnceLock, Regex, TemplateError};
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_saphyr::{DuplicateKeyPolicy, Location, Options, Spanned};
    use std::fmt;

    pub fn load(text: &str) -> Result<Json, TemplateError> {
        let options = Options {
            duplicate_keys: DuplicateKeyPolicy::LastWins,
            with_snippet: false,
            ..Options::default()
        };
        let node: Node = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| TemplateError::Yaml(e.to_string()))?;
        Resolver { text }.value(node)
    }

    /// One YAML node as serde-saphyr delivered it, with where it came from.
    struct Node {
        raw: Raw,
        at: Location,
    }

    enum Raw {
        Null,
        Bool(bool),
        Int(i128),
        Float(f64),
        Str(String),
        Seq(Vec<Node>),
        Map(Vec<(Node, Node)>),
    }

    impl<'de> Deserialize<'de> for Node {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let spanned = Spanned::<Raw>::deserialize(d)?;
            Ok(Node { raw: spanned.value, at: spanned.referenced })
        }
    }

    impl<'de> Deserialize<'de> for Raw {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(RawVisitor)
        }
    }

    struct RawVisitor;

    impl<'de> Visitor<'de> for RawVisitor {
        type Value = Raw;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any YAML node")
        }
        fn visit_unit<E>(self) -> Result<Raw, E> {
            Ok(Raw::Null)
        }
        fn visit_none<E>(self) -> Result<Raw, E> {
            Ok(Raw::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
            Raw::deserialize(d)
        }
        fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
            Ok(Raw::Bool(b))
        }
        fn visit_i64<E>(self, i: i64) -> Result<Raw, E> {
            Ok(Raw::Int(i.into()))
        }
        fn visit_u64<E>(self, u: u64) -> Result<Raw, E> {
            Ok(Raw::Int(u.into()))
        }
        fn visit_i128<E>(self, i: i128) -> Result<Raw, E> {
            Ok(Raw::Int(i))
        }
        fn visit_f64<E>(self, f: f64) -> Result<Raw, E> {
            Ok(Raw::Float(f))
        }
        fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
            Ok(Raw::Str(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Raw, E> {
            Ok(Raw::Str(s))
        }
        fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Raw, E> {
            String::from_utf8(b.to_vec()).map(Raw::Str).map_err(|_| E::custom("binary data is not text"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<Node>()? {
                items.push(item);
            }
            Ok(Raw::Seq(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
            let mut pairs = Vec::new();
            while let Some(key) = map.next_key::<Node>()? {
                let value = map.next_value::<Node>()?;
                pairs.push((key, value));
            }
            Ok(Raw::Map(pairs))
        }
    }

    /// A resolved scalar or collection, before conversion to JSON.
    enum Scalar {
        Null,
        Bool(bool),
        Int(i128),
        Float(f64),
        Str(String),
    }

    struct Resolver<'t> {
        text: &'t str,
    }

    impl Resolver<'_> {
        fn value(&self, node: Node) -> Result<Json, TemplateError> {
            match node.raw {
                Raw::Seq(items) => {
                    items.into_iter().map(|n| self.value(n)).collect::<Result<Vec<_>, _>>().map(Json::Array)
                }
                Raw::Map(pairs) => self.mapping(pairs),
                raw => Ok(scalar_json(self.scalar(raw, &node.at)?)),
            }
        }

        /// PyYAML builds a dict: a repeated key keeps its first place and takes the last value.
        fn mapping(&self, pairs: Vec<(Node, Node)>) -> Result<Json, TemplateError> {
            let mut map = Map::new();
            let mut identities: Vec<(KeyId, String)> = Vec::new();
            for (key, value) in pairs {
                let line = key.at.line();
                let key = match key.raw {
                    Raw::Seq(_) | Raw::Map(_) => {
                        return Err(TemplateError::Yaml(format!(
                            "found unhashable key (a list or mapping) at line {line}"
                        )))
                    }
                    raw => self.scalar(raw, &key.at)?,
                };
                if matches!(&key, Scalar::Str(s) if s == "<<") {
                    return Err(TemplateError::Yaml(format!("merge keys (<<) are not supported, line {line}")));
                }
                let id = KeyId::of(&key);
                let name = match identities.iter().find(|(known, _)| *known == id) {
                    Some((_, name)) => name.clone(),
                    None => {
                        let name = key_string(&key);
                        identities.push((id, name.clone()));
                        name
                    }
                };
                map.insert(name, self.value(value)?);
            }
            Ok(Json::Object(map))
        }

        /// Quoted and block scalars are strings; plain ones go through PyYAML's resolver.
        fn scalar(&self, raw: Raw, at: &Location) -> Result<Scalar, TemplateError> {
            let source = self.source(at);
            let first = source.chars().next();
            if let Raw::Str(s) = &raw {
                if matches!(first, Some('\'' | '"' | '|' | '>')) {
                    return Ok(Scalar::Str(s.clone()));
                }
            }
            if matches!(first, Some('!' | '&' | '*')) {
                return Ok(from_raw(raw));
            }
            let plain = match raw {
                Raw::Str(s) => s,
                Raw::Null if source.trim().is_empty() => String::new(),
                _ => source.trim().to_owned(),
            };
            resolve_plain(&plain).map_err(|m| TemplateError::Yaml(format!("{m} at line {}", at.line())))
        }

        fn source(&self, at: &Location) -> &str {
            let span = at.span();
            let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else {
                return "";
            };
            let start = start as usize;
            self.text.get(start..start + len as usize).unwrap_or("")
        }
    }

    fn from_raw(raw: Raw) -> Scalar {
        match raw {
            Raw::Bool(b) => Scalar::Bool(b),
            Raw::Int(i) => Scalar::Int(i),
            Raw::Float(f) => Scalar::Float(f),
            Raw::Str(s) => Scalar::Str(s),
            _ => Scalar::Null,
        }
    }

    /// Python dict key equality: `1 == 1.0 == True`, strings by text, None by itself.
    #[derive(PartialEq)]
    enum KeyId {
        Null,
        Num(f64),
        Str(String),
    }

    impl KeyId {
        fn of(key: &Scalar) -> KeyId {
            match key {
                Scalar::Null => KeyId::Null,
                Scalar::Bool(b) => KeyId::Num(f64::from(u8::from(*b))),
                Scalar::Int(i) => KeyId::Num(*i as f64),
                Scalar::Float(f) => KeyId::Num(*f),
                Scalar::Str(s) => KeyId::Str(s.clone()),
            }
        }
    }

    /// Python's `str()` of a key.
    fn key_string(key: &Scalar) -> String {
        match key {
            Scalar::Null => "None".into(),
            Scalar::Bool(true) => "True".into(),
            Scalar::Bool(false) => "False".into(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => python::float_repr(*f),
            Scalar::Str(s) => s.clone(),
        }
    }

    fn scalar_json(scalar: Scalar) -> Json {
        match scalar {
            Scalar::Null => Json::Null,
            Scalar::Bool(b) => Json::Bool(b),
            Scalar::Int(i) => {
                if let Ok(v) = i64::try_from(i) {
                    Json::from(v)
                } else if let Ok(v) = u64::try_from(i) {
                    Json::from(v)
                } else {
                    Json::from(i as f64)
                }
            }
            // JSON has no inf/nan: keep Python's spelling as text.
            Scalar::Float(f) => serde_json::Number::from_f64(f)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(python::float_repr(f))),
            Scalar::Str(s) => Json::String(s),
        }
    }

    /// PyYAML's implicit resolvers (yaml/resolver.py) and safe constructors for a plain scalar.
    fn resolve_plain(s: &str) -> Result<Scalar, String> {
        if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
            return Ok(Scalar::Null);
        }
        if let Some(b) = yaml11_bool(s) {
            return Ok(Scalar::Bool(b));
        }
        if is_int(s) {
            if let Some(i) = construct_int(s) {
                return Ok(Scalar::Int(i));
            }
        }
        if is_float(s) {
            return Ok(Scalar::Float(construct_float(s)));
        }
        if s == "=" {
            return Err("could not determine a constructor for the tag 'tag:yaml.org,2002:value'".into());
        }
        Ok(Scalar::Str(s.to_owned()))
    }

    fn yaml11_bool(s: &str) -> Option<bool> {
        match s {
            "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
            "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
            _ => None,
        }
    }

    /// PyYAML's int and float resolver patterns, compiled once (immutable, thread-safe).
    fn number_patterns() -> Option<&'static (Regex, Regex)> {
        static PATTERNS: OnceLock<Option<(Regex, Regex)>> = OnceLock::new();
        PATTERNS
            .get_or_init(|| {
                let int = Regex::new(concat!(
                    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)",
                    r"|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
                ));
                let float = Regex::new(concat!(
                    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
                    r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
                    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
                ));
                Some((int.ok()?, float.ok()?))
            })
            .as_ref()
    }

    /// Like PyYAML, only scalars starting with a sign, digit or dot can be numbers.
    fn could_be_number(s: &str) -> bool {
        s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
    }

    fn is_int(s: &str) -> bool {
        could_be_number(s) && number_patterns().is_some_and(|(int, _)| int.is_match(s))
    }

    fn is_float(s: &str) -> bool {
        could_be_number(s) && number_patterns().is_some_and(|(_, float)| float.is_match(s))
    }

    /// SafeConstructor.construct_yaml_int.
    fn construct_int(s: &str) -> Option<i128> {
        let cleaned = s.replace('_', "");
        let (negative, body) = match cleaned.as_bytes().first() {
            Some(b'-') => (true, &cleaned[1..]),
            Some(b'+') => (false, &cleaned[1..]),
            _ => (false, cleaned.as_str()),
        };
        let magnitude = if body == "0" {
            0
        } else if let Some(bin) = body.strip_prefix("0b") {
            i128::from_str_radix(bin, 2).ok()?
        } else if let Some(hex) = body.strip_prefix("0x") {
            i128::from_str_radix(hex, 16).ok()?
        } else if let Some(oct) = body.strip_prefix('0') {
            i128::from_str_radix(oct, 8).ok()?
        } else if body.contains(':') {
            sexagesimal(body)? as i128
        } else {
            body.parse().ok()?
        };
        Some(if negative { -magnitude } else { magnitude })
    }

    /// SafeConstructor.construct_yaml_float.
    fn construct_float(s: &str) -> f64 {
        let cleaned = s.replace('_', "").to_lowercase();
        let (negative, body) = match cleaned.as_bytes().first() {
            Some(b'-') => (true, &cleaned[1..]),
            Some(b'+') => (false, &cleaned[1..]),
            _ => (false, cleaned.as_str()),
        };
        let magnitude = if body == ".inf" {
            f64::INFINITY
        } else if body == ".nan" {
            f64::NAN
        } else if body.contains(':') {
            sexagesimal(body).unwrap_or(f64::NAN)
        } else {
            body.parse().unwrap_or(f64::NAN)
        };
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// `1:20:30` = 1*3600 + 20*60 + 30 (the last part may carry a fraction).
    fn sexagesimal(body: &str) -> Option<f64> {
        body.split(':').try_fold(0.0, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Map<String, Json> {
        serde_json::from_str(json).expect("test params")
    }

    #[test]
    fn float_repr_matches_python() {
        for (f, want) in [
            (1.5, "1.5"),
            (1e20, "1e+20"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1.5e-7, "1.5e-07"),
            (2.5e300, "2.5e+300"),
        ] {
            assert_eq!(python::float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn values_render_as_python_str() {
        let out = render(
            "{{ a }} {{ b }} {{ c }} {{ d }} {{ e }} {{ f }}",
            &params(r#"{"a": null, "b": true, "c": ["x", "it's", 1.0], "d": {"k": false}, "e": 2, "f": 0.5}"#),
            &Limits::default(),
        );
        assert_eq!(out.unwrap(), r#"None True ['x', "it's", 1.0] {'k': False} 2 0.5"#);
    }

    #[test]
    fn billion_iterations_fail_fast() {
        let started = std::time::Instant::now();
        for source in [
            "{% for i in range(1000000000) %}x{% endfor %}",
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        ] {
            match render(source, &Map::new(), &Limits::default()) {
                Err(TemplateError::Render(m)) => assert!(!m.is_empty()),
                other => panic!("expected a render error, got {other:?}"),
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn output_too_large() {
        let limits = Limits { max_output: 100, ..Limits::default() };
        let result = render("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", &Map::new(), &limits);
        assert!(matches!(result, Err(TemplateError::TooLarge(100))), "{result:?}");
    }

    #[test]
    fn bad_match_pattern() {
        let result = render("{{ 'abc' | match('(') }}", &Map::new(), &Limits::default());
        match result {
            Err(TemplateError::Render(m)) => assert!(m.contains("pattern"), "{m}"),
            other => panic!("expected a render error, got {other:?}"),
        }
    }

    #[test]
    fn match_anchors_at_start_only() {
        let out = render(
            "{{ 'compute:nova' | match('compute') }} {{ 'xcompute' | match('compute') }} {{ 'ab' | match('a$') }}",
            &Map::new(),
            &Limits::default(),
        );
        assert_eq!(out.unwrap(), "True False False");
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        let out = render("a: {{ x }}\n\n", &Map::new(), &Limits::default());
        assert_eq!(out.unwrap(), "a: \n");
    }

    #[test]
    fn looping_over_none_fails_like_python() {
        let none = params(r#"{"xs": null, "o": {"xs": null}}"#);
        for source in ["{% for x in xs %}{{ x }}{% endfor %}", "{%- for a, b in o.xs if a -%}{%- endfor %}"] {
            let result = render(source, &none, &Limits::default());
            assert!(matches!(&result, Err(TemplateError::Render(m)) if m.contains("not iterable")), "{result:?}");
        }
        let out = render("{% for x in xs %}{{ x }}{% endfor %}|{% for x in ys %}{% endfor %}", &params(r#"{"xs": [1, 2]}"#), &Limits::default());
        assert_eq!(out.unwrap(), "12|");
        let raw = render("{% raw %}{% for x in xs %}{% endraw %}", &none, &Limits::default());
        assert_eq!(raw.unwrap(), "{% for x in xs %}");
    }

    #[test]
    fn invalid_yaml_is_a_yaml_error() {
        let result = parse("a: [1, 2\nb: c");
        assert!(matches!(result, Err(TemplateError::Yaml(_))), "{result:?}");
    }

    #[test]
    fn top_level_list_is_a_shape_error() {
        match parse("- a\n- b\n") {
            Err(TemplateError::Shape(m)) => assert!(m.contains("a list"), "{m}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn object_without_type_is_a_shape_error() {
        match parse("router:\n  ip: 10.0.0.1\n") {
            Err(TemplateError::Shape(m)) => assert!(m.contains("router"), "{m}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
        assert!(matches!(parse("db_mappings: x\n"), Err(TemplateError::Shape(_))));
    }

    #[test]
    fn duplicate_keys_last_wins_in_first_place() {
        let text = "a:\n  type: x\ndb_mappings:\n  - mapped_id: 1\nb:\n  type: y\ndb_mappings:\n  - mapped_id: 2\n";
        let rendered = parse(text).unwrap();
        let names: Vec<_> = rendered.objects.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(rendered.db_mappings, vec![serde_json::json!({"mapped_id": 2})]);
    }

    #[test]
    fn empty_render_has_no_objects() {
        assert_eq!(parse("").unwrap(), Rendered::default());
        assert_eq!(parse("  \n\n").unwrap(), Rendered::default());
        let rendered = render_objects("{% if x %}a:\n  type: t\n{% endif %}\n", &Map::new(), &Limits::default());
        assert_eq!(rendered.unwrap(), Rendered::default());
    }

    #[test]
    fn yaml_11_scalars() {
        let rendered = parse(
            "o:\n  type: t\n  a: yes\n  b: 'yes'\n  c: 1e5\n  d: 1.0e+5\n  e: 0x1F\n  f: 017\n  g: 1:20\n  h: ~\n  i: nUll\n  j: 1_000\n  k:\n  l: None\n",
        )
        .unwrap();
        assert_eq!(
            Json::Object(rendered.objects[0].1.clone()),
            serde_json::json!({"type": "t", "a": true, "b": "yes", "c": "1e5", "d": 100000.0, "e": 31,
                "f": 15, "g": 80, "h": null, "i": "nUll", "j": 1000, "k": null, "l": "None"})
        );
    }
}
