//! Probes of the two Contrail plugin types of SPEC §4 (`virtual_machine_interface` and
//! `virtual_network`) against the OpenContrail analytics REST API.
//!
//! It exists so that the poller only sees [`Probe`] values: the knowledge of the analytics
//! API (URL shapes, `?flat`, `cfilt`, the bulk `POST` form, "unknown key answers `200 {}`")
//! lives here and nowhere else. One [`Contrail`] holds one `ureq::Agent`, shared by every
//! poller thread, so connections to the analytics server are pooled and reused; every
//! request is bounded by the configured timeout. Nothing here panics on what the network
//! sends: HTTP errors, timeouts and malformed bodies all become [`Probe::NoAnswer`] with a
//! reason that names the object and the cause, never a credential.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::{Probe, Prober, UnitKey};

/// The UVE attribute the original collectors polled: a VMI is up when its layer 2 is active.
const VMI_CFILT: &str = "UveVMInterfaceAgent:l2_active";
/// Most VMIs asked for in one bulk request.
pub const BULK: usize = 100;
/// Upper bound for an analytics answer read into memory (the bulk answer can be large).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// A client of one Contrail analytics server.
///
/// Cheap to clone; clones share the connection pool. `Send + Sync`, so one value can also
/// simply be shared by reference between threads.
#[derive(Clone)]
pub struct Contrail {
    agent: ureq::Agent,
    /// Base URL without a trailing slash, e.g. `http://10.0.0.1:8081`.
    base: String,
    timeout: Duration,
}

impl fmt::Debug for Contrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contrail")
            .field("base", &redact_url(&self.base))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Contrail {
    /// A client for the analytics API at `analytics_url` (e.g. `http://10.0.0.1:8081`);
    /// every stage of a request (connect, send, answer, body) must finish within `timeout`.
    pub fn new(analytics_url: &str, timeout: std::time::Duration) -> Contrail {
        let agent = super::http_agent(timeout, None);
        Contrail {
            agent,
            base: analytics_url.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// `virtual_machine_interface`: `UveVMInterfaceAgent.l2_active` true → Up, false → Down;
    /// unknown to analytics, attribute missing, HTTP error, timeout or bad JSON → NoAnswer.
    pub fn probe_vmi(&self, fq_name: &str) -> Probe {
        match self.vmi_uve(fq_name) {
            Ok(uve) => vmi_status(fq_name, &uve),
            Err(why) => no_answer(fq_name, &why),
        }
    }

    /// The UVE a `virtual_machine_interface` probe reads (`l2_active` only), as analytics
    /// answered it.
    pub fn vmi_uve(&self, fq_name: &str) -> Result<Value, String> {
        let url = format!(
            "{}/analytics/uves/virtual-machine-interface/{}?flat&cfilt={}",
            self.base,
            encode_segment(fq_name),
            VMI_CFILT
        );
        self.get_json(&url)
    }

    /// `virtual_network`: a non-empty UVE → Up, `{}` (unknown to analytics) → Down;
    /// HTTP error, timeout or bad JSON → NoAnswer.
    pub fn probe_vn(&self, fq_name: &str) -> Probe {
        match self.vn_uve(fq_name) {
            Ok(uve) => vn_status(fq_name, &uve),
            Err(why) => no_answer(fq_name, &why),
        }
    }

    /// The UVE a `virtual_network` probe reads, as analytics answered it.
    pub fn vn_uve(&self, fq_name: &str) -> Result<Value, String> {
        let url = format!("{}/analytics/uves/virtual-network/{}?flat", self.base, encode_segment(fq_name));
        self.get_json(&url)
    }

    /// Many `virtual_machine_interface` probes in ONE bulk request
    /// (`POST /analytics/uves/virtual-machine-interface` with `kfilt` + `cfilt`).
    /// The result has one entry per input name, in input order; a name missing from the
    /// answer is NoAnswer; if the request itself fails every entry is NoAnswer.
    pub fn probe_vmis(&self, fq_names: &[String]) -> Vec<Probe> {
        if fq_names.is_empty() {
            return Vec::new();
        }
        let url = format!("{}/analytics/uves/virtual-machine-interface", self.base);
        let body = serde_json::json!({ "kfilt": fq_names, "cfilt": [VMI_CFILT] });
        let answer = self.request_json(self.agent.post(&url).send_json(&body));
        let uves = match answer.and_then(bulk_values) {
            Ok(uves) => uves,
            Err(why) => return fq_names.iter().map(|n| no_answer(n, &why)).collect(),
        };
        fq_names
            .iter()
            .map(|name| match uves.get(name.as_str()) {
                Some(uve) => vmi_status(name, uve),
                None => no_answer(name, "not known to analytics"),
            })
            .collect()
    }

    fn get_json(&self, url: &str) -> Result<Value, String> {
        self.request_json(self.agent.get(url).call())
    }

    /// Turns the outcome of one request into the parsed JSON answer or a reason.
    fn request_json(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, String> {
        let mut response = result.map_err(|e| self.describe(&e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status} from analytics"));
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| self.describe(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON from analytics: {e}"))
    }

    /// A reason for a transport error, free of the URL (which may carry credentials).
    fn describe(&self, e: &ureq::Error) -> String {
        match e {
            ureq::Error::Timeout(_) => {
                format!(
                    "no answer from analytics within {} ms",
                    self.timeout.as_millis()
                )
            }
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                format!(
                    "no answer from analytics within {} ms",
                    self.timeout.as_millis()
                )
            }
            ureq::Error::Io(io) => format!("analytics unreachable: {io}"),
            ureq::Error::HostNotFound => "analytics host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection to analytics failed".to_string(),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                format!("bad analytics url {}", redact_url(&self.base))
            }
            ureq::Error::StatusCode(code) => format!("HTTP {code} from analytics"),
            other => {
                // Display of the remaining variants does not carry the URL, but make sure.
                let text = other.to_string();
                match userinfo(&self.base) {
                    Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
                    _ => text,
                }
            }
        }
    }
}

/// `virtual_machine_interface`: one unit per VMI; due VMIs are asked for in bulk POSTs.
/// The poll unit of the VMI `fq_name` (the UVE stream names VMIs by it).
pub fn vmi_unit(fq_name: &str) -> UnitKey {
    UnitKey::new(&VMI, String::new(), String::new(), fq_name.to_string())
}

pub static VMI: Prober = Prober {
    label: "contrail_vmi",
    unit: Some(|o, _| Ok((vmi_unit(&o.text("fq_name")), o.text("fq_name")))),
    poll: |c, _, fq_names| c.contrail.probe_vmis(fq_names),
    probe: |c, o| {
        let fq_name = o.text("fq_name");
        match c.contrail.vmi_uve(&fq_name) {
            Ok(uve) => (vmi_status(&fq_name, &uve), describe_uve(&uve)),
            Err(why) => (no_answer(&fq_name, &why), format!("no UVE: {why}")),
        }
    },
    bulk: BULK,
    device: None,
    options: "--analytics URL",
};

/// `virtual_network`: one unit per network.
pub static VN: Prober = Prober {
    label: "contrail_vn",
    unit: Some(|o, _| Ok((UnitKey::new(&VN, String::new(), String::new(), o.text("fq_name")), String::new()))),
    poll: |c, key, asks| super::each(asks, c.contrail.probe_vn(&key.scope)),
    probe: |c, o| {
        let fq_name = o.text("fq_name");
        match c.contrail.vn_uve(&fq_name) {
            Ok(uve) => (vn_status(&fq_name, &uve), describe_uve(&uve)),
            Err(why) => (no_answer(&fq_name, &why), format!("no UVE: {why}")),
        }
    },
    bulk: 1,
    device: None,
    options: "--analytics URL",
};

/// A UVE as the probe runner prints it: at most 300 characters.
fn describe_uve(uve: &Value) -> String {
    let text = uve.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("UVE {}… ({} bytes)", &text[..cut], text.len()),
        None => format!("UVE {text}"),
    }
}

/// Status of one VN UVE: non-empty → Up, `{}` → Down.
fn vn_status(fq_name: &str, uve: &Value) -> Probe {
    match uve {
        Value::Object(map) if map.is_empty() => Probe::Down,
        Value::Object(_) => Probe::Up,
        _ => no_answer(fq_name, "analytics answered something other than a JSON object"),
    }
}

/// Status of one VMI UVE (as answered with `cfilt=UveVMInterfaceAgent:l2_active`).
fn vmi_status(fq_name: &str, uve: &Value) -> Probe {
    match uve.as_object() {
        None => no_answer(
            fq_name,
            "analytics answered something other than a JSON object",
        ),
        Some(map) if map.is_empty() => no_answer(fq_name, "not known to analytics"),
        Some(_) => match uve.pointer("/UveVMInterfaceAgent/l2_active") {
            Some(Value::Bool(true)) => Probe::Up,
            Some(Value::Bool(false)) => Probe::Down,
            Some(_) => no_answer(fq_name, "UveVMInterfaceAgent.l2_active is not a boolean"),
            None => no_answer(fq_name, "no UveVMInterfaceAgent.l2_active in the UVE"),
        },
    }
}

/// `{"value": [{"name", "value"}…]}` → name → UVE.
fn bulk_values(answer: Value) -> Result<HashMap<String, Value>, String> {
    let Value::Object(mut top) = answer else {
        return Err("bulk answer is not a JSON object".to_string());
    };
    let Some(Value::Array(entries)) = top.remove("value") else {
        return Err("bulk answer has no \"value\" list".to_string());
    };
    let mut uves = HashMap::with_capacity(entries.len());
    for entry in entries {
        let Value::Object(mut entry) = entry else {
            continue;
        };
        if let (Some(Value::String(name)), Some(value)) =
            (entry.remove("name"), entry.remove("value"))
        {
            uves.insert(name, value);
        }
    }
    Ok(uves)
}

fn no_answer(fq_name: &str, why: &str) -> Probe {
    Probe::NoAnswer(format!("{fq_name}: {why}"))
}

/// Percent-encodes what may not stand in one URL path segment. Unreserved characters,
/// sub-delimiters, `:` and `@` stay (RFC 3986 `pchar`), so Contrail's `a:b:c` names are
/// sent as they are; `/`, `?`, `#`, `%`, spaces, controls and non-ASCII bytes are encoded.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `user:pass` part of `scheme://user:pass@host/…`, if any.
fn userinfo(url: &str) -> Option<&str> {
    let rest = &url[url.find("://").map(|i| i + 3)?..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// The URL without its userinfo, fit for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(secret) => url.replacen(&format!("{secret}@"), "", 1),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            encode_segment("default-domain:admin:vn1"),
            "default-domain:admin:vn1"
        );
        assert_eq!(encode_segment("a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(redact_url("http://u:p@h:8081/x"), "http://h:8081/x");
        assert_eq!(redact_url("http://h:8081"), "http://h:8081");
        assert_eq!(userinfo("http://u:p@h"), Some("u:p"));
        let c = Contrail::new(
            "http://admin:s3cret@127.0.0.1:1/",
            Duration::from_millis(10),
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn vmi_uves_map_to_probes() {
        let up = serde_json::json!({"UveVMInterfaceAgent": {"l2_active": true}});
        let down = serde_json::json!({"UveVMInterfaceAgent": {"l2_active": false}});
        assert_eq!(vmi_status("x", &up), Probe::Up);
        assert_eq!(vmi_status("x", &down), Probe::Down);
        assert!(
            matches!(vmi_status("x", &serde_json::json!({})), Probe::NoAnswer(r) if r.starts_with("x: "))
        );
        assert!(matches!(
            vmi_status("x", &serde_json::json!({"UveVMInterfaceAgent": {}})),
            Probe::NoAnswer(_)
        ));
    }

    #[test]
    fn contrail_is_shareable() {
        fn assert_traits<T: Clone + Send + Sync>() {}
        assert_traits::<Contrail>();
    }
}
