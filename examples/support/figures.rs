//! How the benchmarks turn their measurements into the figures they print: quantiles of
//! delays, MiB, "met" or "NOT met", and etcd's current revision.

use esi_monitor::store::Store;

/// The `p` quantile (0..=1, nearest rank) of `xs`; NaN when empty.
pub fn quantile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `n=… p50 … s, p99 … s (min …, max …)` of delays in seconds.
pub fn delays_text(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n=0".into();
    }
    format!(
        "n={} p50 {:.2} s, p99 {:.2} s (min {:.2}, max {:.2})",
        xs.len(),
        quantile(xs, 0.5),
        quantile(xs, 0.99),
        quantile(xs, 0.0),
        quantile(xs, 1.0)
    )
}

/// etcd's revision now (from an empty range).
pub fn revision(store: &Store) -> Result<i64, String> {
    store.range("/bench-revision-probe/").map(|(_, rev)| rev).map_err(|e| e.to_string())
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}
