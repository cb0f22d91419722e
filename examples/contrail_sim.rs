//! A runnable Contrail analytics simulator for demos and manual testing of esi-monitor.
//!
//! No real analytics server is available outside a Contrail cluster; this serves the same
//! simulator the tests use (`tests/support/contrail_sim.rs`) on a fixed address, pre-loaded
//! with the recorded samples plus the objects named on the command line:
//!
//! ```text
//! cargo run --example contrail_sim -- --listen 127.0.0.1:8081 \
//!     [--vmi-up NAME]... [--vmi-down NAME]... [--vn NAME]...
//! ```
//!
//! It prints `listening on http://…` on stdout and serves until killed.

#[path = "../tests/support/contrail_sim.rs"]
mod contrail_sim;

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str =
    "usage: contrail_sim [--listen ADDR] [--vmi-up NAME]... [--vmi-down NAME]... [--vn NAME]...
  --listen ADDR     address to serve on (default 127.0.0.1:8081)
  --vmi-up NAME     a virtual-machine-interface UVE with l2_active = true
  --vmi-down NAME   a virtual-machine-interface UVE with l2_active = false
  --vn NAME         a virtual-network UVE";

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:8081".to_string();
    let mut vmis: Vec<(String, bool)> = Vec::new();
    let mut vns: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        if !matches!(
            arg.as_str(),
            "--listen" | "--vmi-up" | "--vmi-down" | "--vn"
        ) {
            eprintln!("contrail_sim: unknown argument {arg}\n{USAGE}");
            return ExitCode::from(2);
        }
        let Some(value) = args.next() else {
            eprintln!("contrail_sim: {arg} needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        match arg.as_str() {
            "--listen" => listen = value,
            "--vmi-up" => vmis.push((value, true)),
            "--vmi-down" => vmis.push((value, false)),
            _ => vns.push(value),
        }
    }

    let sim = match contrail_sim::ContrailSim::start_on(&listen) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("contrail_sim: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, up) in &vmis {
        sim.set_l2_active(name, *up);
    }
    for name in &vns {
        sim.add_vn(name);
    }
    println!("listening on {}", sim.url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
