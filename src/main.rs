//! The `esi-monitor` command line: a thin layer that reads arguments, sets up logging and
//! turns every error into one message on stderr.

use argh::FromArgs;
use esi_monitor::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// esi-monitor: the monitoring worker of an ESI control plane.
#[derive(FromArgs)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(Run),
    Render(Render),
    Status(Status),
    CheckConfig(CheckConfig),
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
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Run(r) => run(r),
        Command::Render(r) => esi_monitor::render_cmd::run(&r.template, &r.params),
        Command::Status(s) => load_config(&s.config).and_then(|c| esi_monitor::status_cmd::run(&c, &s.resource)),
        Command::CheckConfig(c) => Config::load(&c.file).map(|_| println!("{}: valid", c.file.display())),
        Command::Version(_) => {
            println!("esi-monitor {}", env!("CARGO_PKG_VERSION"));
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

/// The command line; `--help` prints and exits 0, a usage error prints and exits 2.
fn parse_args() -> Result<Cli, ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(String::as_str).unwrap_or("esi-monitor");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    Cli::from_args(&[name], &rest).map_err(|early| match early.status {
        Ok(()) => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprintln!("{}\nRun {name} --help for more information.", early.output);
            ExitCode::from(2)
        }
    })
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    }
}

fn run(args: Run) -> Result<(), String> {
    let config = load_config(&args.config)?;
    let level: log::LevelFilter = config.log.level.parse().unwrap_or(log::LevelFilter::Info);
    let log_config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .add_filter_allow_str("esi_monitor") // not the HTTP and gRPC libraries' chatter
        .build();
    let _ = simplelog::WriteLogger::init(level, log_config, std::io::stderr());
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: finishing running jobs, then stopping");
                drop(stop_tx); // closing the channel tells every thread at once
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    esi_monitor::runtime::run(config, stop_rx)
}
