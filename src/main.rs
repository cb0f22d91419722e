//! The `esi-monitor` command line: a thin layer that reads arguments, sets up logging and
//! turns every error into one message on stderr.

use argh::FromArgs;
use esi_monitor::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// esi-monitor: the monitoring worker of an ESI control plane.
#[derive(FromArgs)]
struct Cli {
    /// print the version and the git revision it was built from
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(Run),
    Render(Render),
    Status(Status),
    Jobs(Jobs),
    CheckConfig(CheckConfig),
    Probe(esi_monitor::probe_cmd::ProbeArgs),
    Version(Version),
}

/// Execute monitoring_worker jobs from etcd until stopped.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct Run {
    /// the YAML configuration file
    #[argh(option)]
    config: Option<PathBuf>,
}

/// Print the objects and db_mappings a template renders to.
#[derive(FromArgs)]
#[argh(subcommand, name = "render")]
struct Render {
    /// the template: Jinja2 text, or a heat_templates record as stored in etcd (JSON)
    #[argh(option)]
    template: PathBuf,
    /// the params: a JSON object of variables, or a job's params list
    #[argh(option)]
    params: PathBuf,
}

/// Print a monitored resource: its objects, the running service's last results and
/// confirmed statuses, and its /monitoring record.
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct Status {
    /// the resource, as <plural>/<id> (e.g. ports/7abe783f-…)
    #[argh(positional)]
    resource: String,
    /// the YAML configuration file (etcd endpoints, metrics.listen)
    #[argh(option)]
    config: Option<PathBuf>,
}

/// List the monitoring jobs in etcd: pending (runnable or waiting on dependencies), claimed
/// (with the owning instance and how long ago it claimed the job) and failed.
#[derive(FromArgs)]
#[argh(subcommand, name = "jobs")]
struct Jobs {
    /// the YAML configuration file (etcd endpoints, jobs.handler)
    #[argh(option)]
    config: Option<PathBuf>,
    /// list the jobs of every handler, not only jobs.handler's
    #[argh(switch)]
    all: bool,
}

/// Validate a configuration file without starting anything.
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
struct CheckConfig {
    /// the YAML configuration file
    #[argh(positional)]
    file: PathBuf,
}

/// Print the version.
#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
struct Version {}

fn main() -> ExitCode {
    let cli: Cli = match esi_monitor::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let Some(command) = cli.command else {
        if cli.version {
            println!("{}", version());
            return ExitCode::SUCCESS;
        }
        eprintln!("esi-monitor: a command is needed\nRun esi-monitor --help for more information.");
        return ExitCode::from(2);
    };
    let result = match command {
        Command::Run(r) => run(r),
        Command::Render(r) => esi_monitor::render_cmd::run(&r.template, &r.params),
        Command::Status(s) => load_config(&s.config).and_then(|c| esi_monitor::status_cmd::run(&c, &s.resource)),
        Command::Jobs(j) => load_config(&j.config).and_then(|c| esi_monitor::jobs_cmd::run(&c, j.all)),
        Command::Probe(p) => return esi_monitor::probe_cmd::main("esi-monitor probe", p),
        Command::CheckConfig(c) => Config::load(&c.file).map(|_| println!("{}: valid", c.file.display())),
        Command::Version(_) => {
            println!("{}", version());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esi-monitor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    }
}

/// `esi-monitor 0.1.0 (git 1a2b3c4d5e6f)`.
fn version() -> String {
    format!("esi-monitor {} (git {})", env!("CARGO_PKG_VERSION"), env!("ESI_MONITOR_REVISION"))
}

fn run(args: Run) -> Result<(), String> {
    let config = load_config(&args.config)?;
    esi_monitor::logging::init(config.log_level(), config.log.format == "json");
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let (reload_tx, reload_rx) = crossbeam_channel::unbounded::<Config>();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let path = args.config.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig != SIGHUP {
                    log::info!("signal {sig}: finishing running jobs, then stopping");
                    drop(stop_tx); // closing the channel tells every thread at once
                    return;
                }
                match &path {
                    None => log::warn!("SIGHUP: no --config file to reload; nothing changes"),
                    Some(path) => match Config::load(path) {
                        Ok(config) => {
                            log::info!("SIGHUP: reloading {}", path.display());
                            let _ = reload_tx.send(config);
                        }
                        Err(e) => log::error!("SIGHUP: reload refused, the running configuration stays: {e}"),
                    },
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    esi_monitor::runtime::run(config, stop_rx, reload_rx)
}
