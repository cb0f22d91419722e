//! `/metrics` of a running esi-monitor, scraped over real HTTP: every sample as
//! `name{labels}` → value.

use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// One scrape: every sample as `name{labels}` → value, and the content type; `None` while
/// the service does not answer yet.
pub fn try_scrape(listen: std::net::SocketAddr) -> Option<(BTreeMap<String, f64>, String)> {
    let mut response = ureq::get(&format!("http://{listen}/metrics")).call().ok()?;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.body_mut().read_to_string().expect("/metrics body");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l:?}"));
            (series.to_string(), value.parse().unwrap_or_else(|_| panic!("not a value: {l:?}")))
        })
        .collect();
    Some((samples, content_type))
}

pub fn scrape(listen: std::net::SocketAddr) -> (BTreeMap<String, f64>, String) {
    try_scrape(listen).expect("/metrics answers")
}

pub fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("{series} is not exported"))
}

/// Scrapes until `ok` holds for the samples (the service counts after it writes); a timeout
/// shows the last scrape (without the histogram buckets).
pub fn scrape_until(listen: std::net::SocketAddr, what: &str, ok: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let samples = try_scrape(listen).map(|(s, _)| s);
        match samples {
            Some(s) if ok(&s) => return s,
            _ if std::time::Instant::now() > deadline => {
                let last: Vec<_> = samples.iter().flatten().filter(|(k, _)| !k.contains("_bucket")).collect();
                panic!("timed out after {LIMIT:?} waiting for {what}; last scrape: {last:?}");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

