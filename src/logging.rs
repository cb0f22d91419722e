//! The service's logger: one line per record on stderr, as text for journald or as JSON for
//! log shippers, with the job being executed (id and resource) attached to every line a pool
//! thread writes while it works on that job. Only esi-monitor's own records are written, not
//! the chatter of the HTTP and gRPC libraries. The level can change while running (SIGHUP).

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static JSON: AtomicBool = AtomicBool::new(false);
/// Set when stderr is the journal: lines then start with a `<N>` syslog priority (which
/// journald turns into the entry's priority) instead of a time (which journald adds).
static JOURNAL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The job this thread is working on: (job id, `<plural>/<resource id>`).
    static JOB: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

struct Logger;
static LOGGER: Logger = Logger;

/// Installs the logger (once; later calls only change the settings).
pub fn init(level: log::LevelFilter, json: bool) {
    JOURNAL.store(stderr_is_the_journal(), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    configure(level, json);
}

/// systemd sets `JOURNAL_STREAM=<device>:<inode>` of the journal stream it connects; stderr
/// is that stream only when its own device and inode match (not when redirected elsewhere).
fn stderr_is_the_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var("JOURNAL_STREAM").ok() else { return false };
    let Some(meta) = std::io::stderr().as_fd().try_clone_to_owned().ok().and_then(|fd| std::fs::File::from(fd).metadata().ok())
    else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// Changes the level and the format of the lines written from now on.
pub fn configure(level: log::LevelFilter, json: bool) {
    JSON.store(json, Ordering::Relaxed);
    log::set_max_level(level);
}

/// Marks the lines this thread logs until the guard is dropped as being about one job.
pub fn job_scope(job_id: &str, resource: String) -> JobScope {
    JOB.with(|j| *j.borrow_mut() = Some((job_id.to_string(), resource)));
    JobScope(())
}

/// Ends a `job_scope` when dropped.
pub struct JobScope(());

impl Drop for JobScope {
    fn drop(&mut self) {
        JOB.with(|j| *j.borrow_mut() = None);
    }
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::max_level() && meta.target().starts_with("esi_monitor")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = JOB.with(|j| {
            let job = j.borrow();
            let job = job.as_ref().map(|(id, resource)| (id.as_str(), resource.as_str()));
            if JSON.load(Ordering::Relaxed) {
                json_line(record, job)
            } else {
                text_line(record, job, JOURNAL.load(Ordering::Relaxed))
            }
        });
        // One write per line, so that lines of different threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn text_line(record: &log::Record, job: Option<(&str, &str)>, journal: bool) -> String {
    let prefix = if journal {
        format!("<{}>", syslog_priority(record.level()))
    } else {
        format!("{} ", utc(now()))
    };
    let job = job.map(|(id, resource)| format!("job={id} resource={resource}: ")).unwrap_or_default();
    format!("{prefix}{:<5} {job}{}\n", record.level(), record.args())
}

fn json_line(record: &log::Record, job: Option<(&str, &str)>) -> String {
    let mut line = serde_json::Map::new();
    line.insert("time".into(), utc(now()).into());
    line.insert("level".into(), record.level().as_str().to_lowercase().into());
    if let Some((id, resource)) = job {
        line.insert("job".into(), id.into());
        line.insert("resource".into(), resource.into());
    }
    line.insert("message".into(), record.args().to_string().into());
    format!("{}\n", serde_json::Value::Object(line))
}

/// The syslog priority journald reads from a `<N>` prefix.
fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ss.sssZ` (UTC).
pub fn utc(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let (days, rem) = (whole.div_euclid(86_400), whole.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let millis = ((secs - secs.floor()) * 1000.0) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Now, as Unix seconds.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00.000Z");
        // Checked with `date -u -d @1795365108`.
        assert_eq!(utc(1_795_365_108.25), "2026-11-22T16:31:48.250Z");
        assert_eq!(utc(1_494_471_934.25), "2017-05-11T03:05:34.250Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_709_164_800.0), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn lines_carry_the_job_in_both_formats() {
        let job = Some(("j1", "ports/p1"));
        let line = |f: &dyn Fn(&log::Record) -> String| {
            f(&log::Record::builder()
                .level(log::Level::Info)
                .target("esi_monitor::x")
                .args(format_args!("rendered 3 objects"))
                .build())
        };
        let text = line(&|r| text_line(r, job, true));
        assert_eq!(text, "<6>INFO  job=j1 resource=ports/p1: rendered 3 objects\n");
        let json: serde_json::Value = serde_json::from_str(&line(&|r| json_line(r, job))).unwrap();
        assert_eq!(json["job"], "j1");
        assert_eq!(json["resource"], "ports/p1");
        assert_eq!(json["level"], "info");
        assert_eq!(json["message"], "rendered 3 objects");
        assert!(!line(&|r| text_line(r, None, false)).contains("job="));
    }
}
