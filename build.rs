//! Records the git revision the binary is built from, for `esi-monitor --version`. Outside a
//! git checkout (a source tarball) it is `ESI_MONITOR_REVISION` from the environment, or
//! "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ESI_MONITOR_REVISION");
    let revision = std::env::var("ESI_MONITOR_REVISION").ok().or_else(|| {
        // Rebuild when HEAD moves (a commit, a checkout) or the index changes (dirty state).
        for path in ["HEAD", "index"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &head]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
        Some(if dirty { format!("{rev}-dirty") } else { rev })
    });
    println!("cargo:rustc-env=ESI_MONITOR_REVISION={}", revision.unwrap_or_else(|| "unknown".into()));
}
