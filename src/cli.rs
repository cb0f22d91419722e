//! Reading a command line the way every esi-monitor command does (the binary and the
//! examples that stand for one of its commands): `--help` prints to stdout and exits 0, a
//! usage error prints to stderr and exits 2.

use std::process::ExitCode;

/// The arguments of this process as `T`, or the exit code the caller returns at once.
pub fn parse_args<T: argh::FromArgs>() -> Result<T, ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("esi-monitor");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    T::from_args(&[name], &rest).map_err(|early| match early.status {
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
