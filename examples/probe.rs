//! The operators' probe runner for a source checkout: `cargo run --example probe -- TYPE
//! key=value...` is `esi-monitor probe TYPE key=value...` (src/probe_cmd.rs), which the
//! packaged binary carries. Same arguments, same output.
//!
//! ```text
//! cargo run --example probe -- physical_port device_ip=127.0.0.1 port=16100 community_name=public name=xe-0/0/4
//! cargo run --example probe -- --help
//! ```

fn main() -> std::process::ExitCode {
    match esi_monitor::cli::parse_args() {
        Ok(args) => esi_monitor::probe_cmd::main("probe", args),
        Err(code) => code,
    }
}
