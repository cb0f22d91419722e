//! Asks the running service (its status listener on `metrics.listen`) what only it knows:
//! the last results of a resource's objects (`esi-monitor status`), the jobs waiting for
//! etcd (`esi-monitor jobs`). Short timeouts: a command must not hang on a stuck service.

use crate::config::Config;
use serde_json::Value;
use std::time::Duration;

/// The JSON the listener answers at `path` (`/status/ports/p1`, `/jobs`), or why not.
pub fn get(config: &Config, path: &str) -> Result<Value, String> {
    if config.metrics.listen.is_empty() {
        return Err("metrics.listen is empty in the configuration".into());
    }
    get_at(&config.metrics.listen, path)
}

/// The JSON the listener at `listen` (another member's, from its member key) answers.
pub fn get_at(listen: &str, path: &str) -> Result<Value, String> {
    let url = format!("http://{listen}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_recv_response(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut response = agent.get(&url).call().map_err(|e| format!("{listen}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value = response.body_mut().read_json().map_err(|e| format!("{url}: {e}"))?;
    match status {
        200 => Ok(body),
        _ => Err(body["error"].as_str().unwrap_or("error").to_string()),
    }
}
