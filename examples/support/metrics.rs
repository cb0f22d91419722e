//! `/metrics` of a running esi-monitor, scraped over HTTP (bounded): every sample as
//! `name{labels}` → value. Shared by the benchmarks that read the service's own counters.

use std::collections::BTreeMap;
use std::time::Duration;

/// `http://<listen><path>` of esi-monitor's listener as text (connect ≤ 2 s, answer ≤ 5 s).
pub fn get_text(listen: &str, path: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_recv_response(Some(Duration::from_secs(5)))
        .timeout_recv_body(Some(Duration::from_secs(5)))
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{listen}{path}");
    let mut response = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    response.body_mut().read_to_string().map_err(|e| format!("{url}: {e}"))
}

/// One scrape of esi-monitor's `/metrics`: `name{labels}` → value.
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// Scrapes `http://<listen>/metrics` (connect ≤ 2 s, answer ≤ 5 s).
    pub fn scrape(listen: &str) -> Result<Samples, String> {
        let text = get_text(listen, "/metrics")?;
        Ok(Samples(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect(),
        ))
    }

    /// A series' value; NaN when it is not exported (the figure then prints as NaN).
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(f64::NAN)
    }

    /// Probe results of `ty` (snmp_port, contrail_vmi, netconf_vrrp, …) with `outcome`, or all
    /// outcomes.
    pub fn results(&self, ty: &str, outcome: Option<&str>) -> f64 {
        let outcomes = ["up", "down", "state", "no_answer"];
        outcomes
            .iter()
            .filter(|o| outcome.map_or(true, |w| w == **o))
            .map(|o| self.get(&format!("esi_monitor_probe_results_total{{type=\"{ty}\",outcome=\"{o}\"}}")))
            .sum()
    }

    /// Requests (poll tasks) of probe type `ty`: the count of `probe_duration_seconds`, one per
    /// GET of a device's ports, per VMI bulk POST, per NETCONF RPC.
    pub fn requests(&self, ty: &str) -> f64 {
        self.get(&format!("esi_monitor_probe_duration_seconds_count{{type=\"{ty}\"}}"))
    }
}
