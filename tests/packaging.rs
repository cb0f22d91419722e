//! What operators install: the shipped default configuration is the documented one (it
//! parses, and every value equals the built-in default), and the packages `make deb rpm`
//! build hold the same files at FHS paths with the right modes, create the service's user,
//! keep the configuration away from other users, and ship a unit systemd accepts.
//!
//! The packages are read with dpkg-deb and rpm, and installed with dpkg and rpm in a
//! throwaway overlay of this machine's root (a private mount namespace: nothing reaches the
//! host, and the overlay vanishes with the namespace). That needs root, as CI has. The
//! installed binary's `probe` is run there against a real snmpd and the Contrail simulator
//! (the namespace shares the host's loopback): operators have the package, not cargo.

mod support;

use esi_monitor::config::Config;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = "/usr/bin/esi-monitor";
const UNIT: &str = "/usr/lib/systemd/system/esi-monitor.service";
const CONFIG: &str = "/etc/esi-monitor/config.yaml";
const README: &str = "/usr/share/doc/esi-monitor/README.md";
/// Debian policy requires it in every package (cargo-deb writes it from `license`); an RPM
/// carries the licence in its header instead, so only the deb has it.
const DEB_COPYRIGHT: &str = "/usr/share/doc/esi-monitor/copyright";

/// Every file both packages hold, with its permissions.
const FILES: [(&str, &str); 4] =
    [(BINARY, "-rwxr-xr-x"), (UNIT, "-rw-r--r--"), (CONFIG, "-rw-r-----"), (README, "-rw-r--r--")];

#[test]
fn shipped_configuration_equals_the_defaults() {
    let text = include_str!("../packaging/config.yaml");
    let shipped = Config::parse(text).expect("packaging/config.yaml parses");
    assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
}

#[test]
fn the_deb_holds_exactly_the_expected_files_with_their_modes() {
    let mut files = deb_files();
    assert_eq!(files.remove(DEB_COPYRIGHT).as_deref(), Some("-rw-r--r--"), "the deb's copyright file");
    assert_eq!(files, expected_files());
}

#[test]
fn the_rpm_holds_the_same_files_with_the_same_modes_and_contents_as_the_deb() {
    assert_eq!(rpm_files(), expected_files());
    let root = extract_deb();
    let deb_digests: BTreeMap<String, String> = FILES
        .iter()
        .map(|(path, _)| {
            let sum = run("sha256sum", &[root.path().join(&path[1..]).to_str().unwrap()]);
            (path.to_string(), sum.split_whitespace().next().unwrap().to_string())
        })
        .collect();
    assert_eq!(rpm_query("%{FILEDIGESTALGO}"), "8", "the rpm's file digests are SHA-256");
    let rpm_digests: BTreeMap<String, String> = rpm_query("[%{FILENAMES} %{FILEDIGESTS}\n]")
        .lines()
        .map(|line| line.split_once(' ').map(|(p, d)| (p.to_string(), d.to_string())).unwrap())
        .collect();
    assert_eq!(rpm_digests, deb_digests);
}

#[test]
fn every_packaged_path_is_under_usr_or_etc() {
    for path in deb_files().keys().chain(rpm_files().keys()) {
        let fhs = path.starts_with("/usr/") || path.starts_with("/etc/");
        assert!(fhs && !path.starts_with("/usr/local/"), "{path} is outside /usr and /etc");
    }
}

#[test]
fn the_packaged_unit_and_configuration_are_the_repositorys() {
    let root = extract_deb();
    let packaged = |path: &str| std::fs::read_to_string(root.path().join(&path[1..])).unwrap();
    assert_eq!(packaged(UNIT), include_str!("../packaging/esi-monitor.service"));
    assert_eq!(packaged(CONFIG), include_str!("../packaging/config.yaml"));
}

#[test]
fn the_packaged_binary_is_stripped_and_runs() {
    let root = extract_deb();
    let binary = root.path().join(&BINARY[1..]);
    let sections = run("readelf", &["--section-headers", "--wide", binary.to_str().unwrap()]);
    for name in [".symtab", ".debug_info", ".debug_line"] {
        assert!(!sections.contains(name), "the binary has a {name} section:\n{sections}");
    }
    let version = run(binary.to_str().unwrap(), &["--version"]);
    let expected = format!("esi-monitor {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected) && !version.contains("(git unknown)"), "{version}");
}

#[test]
fn the_deb_control_names_the_package_and_its_conffile() {
    let deb = package("debian", "deb");
    let field = |name: &str| run("dpkg-deb", &["--field", deb.to_str().unwrap(), name]).trim().to_string();
    assert_eq!(field("Package"), "esi-monitor");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert!(field("Description").contains("ESI control plane"), "Description: {}", field("Description"));
    let conffiles = run("dpkg-deb", &["--info", deb.to_str().unwrap(), "conffiles"]);
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), [CONFIG]);
}

#[test]
fn the_packages_need_nothing_beyond_the_base_system() {
    let deb = package("debian", "deb");
    let depends = run("dpkg-deb", &["--field", deb.to_str().unwrap(), "Depends"]);
    // glibc, and OpenSSL 3 and zlib for libssh2 (NETCONF): in every Debian 12 base system.
    for dependency in depends.trim().split(", ") {
        let base = ["libc6 ", "libssl3 ", "zlib1g "];
        assert!(base.iter().any(|b| dependency.starts_with(b)), "the deb depends on {dependency}");
    }
    // The same libraries (RHEL's glibc, openssl-libs, zlib), the compiler's unwinder (part of
    // every base system), the scripts' shell and rpm's own markers.
    let allowed = [
        "libc.so.6", "libm.so.6", "ld-linux", "libgcc_s.so.1", "libssl.so.3", "libcrypto.so.3", "libz.so.1", "/bin/sh",
        "rpmlib(", "rtld(", "config(esi-monitor)",
    ];
    for requirement in run("rpm", &["-qpR", package("rpm", "rpm").to_str().unwrap()]).lines() {
        assert!(allowed.iter().any(|a| requirement.starts_with(a)), "the rpm requires {requirement}");
    }
}

#[test]
fn the_maintainer_scripts_are_valid_sh() {
    let control = deb_control();
    let rpm_scripts = [("pre-install", "%{PREIN}"), ("pre-uninstall", "%{PREUN}"), ("post-uninstall", "%{POSTUN}")];
    for (name, tag) in rpm_scripts {
        std::fs::write(control.path().join(name), rpm_query(tag)).unwrap();
    }
    for name in ["postinst", "prerm", "postrm", "pre-install", "pre-uninstall", "post-uninstall"] {
        let script = control.path().join(name);
        assert!(script.exists(), "no {name} script");
        run("sh", &["-n", script.to_str().unwrap()]);
    }
}

#[test]
fn the_rpm_marks_the_configuration_noreplace_and_gives_it_the_services_group() {
    let rpm = package("rpm", "rpm");
    assert_eq!(run("rpm", &["-qp", "--configfiles", rpm.to_str().unwrap()]).trim(), CONFIG);
    let attributes = rpm_query("[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]");
    let config = attributes.lines().find(|line| line.starts_with(CONFIG)).unwrap();
    // c: configuration, n: noreplace (an edited file is kept on upgrade).
    assert_eq!(config, format!("{CONFIG} cn root:esi-monitor"));
}

#[test]
fn installing_the_deb_creates_the_user_and_keeps_the_configuration_from_others() {
    assert_installs_user_and_files("debian", "deb", "dpkg -i /tmp/package >/dev/null", "/usr/sbin/nologin");
}

#[test]
fn without_adduser_the_deb_creates_the_user_with_useradd() {
    let script = "rm -f /usr/sbin/adduser; dpkg -i /tmp/package >/dev/null";
    assert_installs_user_and_files("debian", "deb", script, "/usr/sbin/nologin");
}

#[test]
fn the_deb_neither_enables_nor_starts_the_service() {
    let facts = install("debian", "deb", "dpkg -i /tmp/package >/dev/null");
    assert_eq!(facts["enabled"], "no");
    let postinst = std::fs::read_to_string(deb_control().path().join("postinst")).unwrap();
    // A running service is restarted on upgrade (try-restart); nothing else starts it.
    for start in ["deb-systemd-invoke start", "deb-systemd-invoke restart", "systemctl start", "enable --now"] {
        assert!(!postinst.contains(start), "the postinst runs `{start}`:\n{postinst}");
    }
}

#[test]
fn reinstalling_the_deb_keeps_an_edited_configuration_and_its_ownership() {
    let script = "dpkg -i /tmp/package >/dev/null
        echo 'log: {level: debug}' > /etc/esi-monitor/config.yaml
        dpkg -i --force-confold /tmp/package >/dev/null";
    let facts = install("debian", "deb", script);
    assert_eq!(facts["config_text"], "log: {level: debug}");
    assert_installed_files(&facts);
}

#[test]
fn installing_the_rpm_creates_the_user_and_keeps_the_configuration_from_others() {
    // Debian's rpm wants --force-debian; --nodeps: this rpm database knows no glibc.
    let script = "rpm -i --nodeps --force-debian /tmp/package 2>/dev/null";
    assert_installs_user_and_files("rpm", "rpm", script, "/sbin/nologin");
}

#[test]
fn the_installed_deb_probes_a_port_and_a_vmi() {
    assert_installed_binary_probes("debian", "deb", "dpkg -i /tmp/package >/dev/null");
}

#[test]
fn the_installed_rpm_probes_a_port_and_a_vmi() {
    assert_installed_binary_probes("rpm", "rpm", "rpm -i --nodeps --force-debian /tmp/package 2>/dev/null");
}

/// Installs the package with `script`, then runs the installed `esi-monitor probe`: its
/// `--help`, a port of a real snmpd that is DOWN, and a VMI of the Contrail simulator.
fn assert_installed_binary_probes(sub: &str, ext: &str, script: &str) {
    let community = "pkg-s3cret";
    let agent = support::snmpd::Snmpd::start("127.0.0.41", community, &support::snmpd::Snmpd::junos_interfaces());
    agent.set_up("xe-0/0/4", false);
    let sim = support::contrail_sim::ContrailSim::start();
    sim.set_l2_active("default-domain:admin:p1", true);
    let probes = format!(
        r#"{script}
        help=$(esi-monitor probe --help) && echo "help_exit=0" || echo "help_exit=$?"
        echo "help_usage=$(echo "$help" | head -n 1)"
        out=$(esi-monitor probe physical_port device_ip={ip} port={port} community_name={community} name=xe-0/0/4 2>&1) \
            && echo port_exit=0 || echo "port_exit=$?"
        echo "port=$out"
        out=$(esi-monitor probe virtual_machine_interface fq_name=default-domain:admin:p1 --analytics {url} 2>&1) \
            && echo vmi_exit=0 || echo "vmi_exit=$?"
        echo "vmi=$out""#,
        ip = agent.addr(),
        port = agent.port(),
        url = sim.url(),
    );
    let facts = install(sub, ext, &probes);
    assert_eq!(facts["help_exit"], "0", "{facts:?}");
    assert!(facts["help_usage"].starts_with("Usage: esi-monitor probe "), "{facts:?}");
    assert_eq!(facts["port_exit"], "1", "a DOWN port exits 1: {facts:?}");
    assert!(facts["port"].starts_with("#1 DOWN") && facts["port"].contains("ifIndex 514, ifOperStatus 2"), "{facts:?}");
    assert!(!facts.values().any(|v| v.contains(community)), "the community is never printed: {facts:?}");
    assert_eq!(facts["vmi_exit"], "0", "{facts:?}");
    assert!(facts["vmi"].starts_with("#1 UP") && facts["vmi"].contains("l2_active"), "{facts:?}");
    assert_installed_files(&facts);
}

#[test]
fn the_unit_is_a_notify_service_with_a_watchdog_reload_and_restart() {
    let settings = unit_settings();
    for wanted in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(settings.iter().any(|s| s == wanted), "the unit lacks {wanted}");
    }
}

#[test]
fn the_unit_runs_as_its_own_user_without_privileges_on_a_read_only_system() {
    let settings = unit_settings();
    let wanted = [
        "User=esi-monitor",
        "Group=esi-monitor",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        // AF_UNIX: sd_notify's datagrams.
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ];
    for wanted in wanted {
        assert!(settings.iter().any(|s| s == wanted), "the unit lacks {wanted}");
    }
    assert!(!settings.iter().any(|s| s.starts_with("AmbientCapabilities=")), "the unit grants capabilities");
}

/// `systemd-analyze verify` checks that the ExecStart binary exists and is executable, and
/// `--root` needs a whole system tree (sysinit.target …), which the package is not. So it
/// verifies a copy of the shipped unit whose ExecStart is the extracted binary. No systemd
/// manager needs to run for this.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let root = extract_deb();
    let binary = root.path().join(&BINARY[1..]);
    let unit = std::fs::read_to_string(root.path().join(&UNIT[1..])).unwrap();
    assert!(unit.contains(&format!("ExecStart={BINARY} ")), "ExecStart is not {BINARY}");
    let copy = root.path().join("esi-monitor.service");
    std::fs::write(&copy, unit.replace(&format!("ExecStart={BINARY} "), &format!("ExecStart={} ", binary.display())))
        .unwrap();
    let out =
        Command::new("systemd-analyze").args(["verify", copy.to_str().unwrap()]).output().expect("run systemd-analyze");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Lines about other units of this machine, if any, are not ours to fix.
    let ours: Vec<&str> = text.lines().filter(|line| line.contains("esi-monitor")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{text}");
}

/// The offline security review scores the sandbox from 0 (tight) to 10 (none); `--threshold`
/// is in tenths. The shipped unit scores about 1.4: dropping hardening fails here.
#[test]
fn the_units_sandbox_keeps_its_exposure_low() {
    let root = extract_deb();
    let unit = root.path().join(&UNIT[1..]);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager", unit.to_str().unwrap()])
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0:\n{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// The shipped unit's `Key=value` lines.
fn unit_settings() -> Vec<String> {
    let unit = include_str!("../packaging/esi-monitor.service");
    unit.lines().filter(|line| !line.starts_with('#') && line.contains('=')).map(str::to_string).collect()
}

fn expected_files() -> BTreeMap<String, String> {
    FILES.iter().map(|(path, mode)| (path.to_string(), mode.to_string())).collect()
}

/// CARGO_TARGET_DIR when it is set, else target/ next to Cargo.toml.
fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), |dir| manifest.join(dir))
}

/// The newest `.ext` file in the target directory's `sub` folder.
fn package(sub: &str, ext: &str) -> PathBuf {
    let dir = target_dir().join(sub);
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| panic!("no .{ext} in {}: run make deb rpm first", dir.display()))
}

/// Runs a command that must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `rpm -qp --qf FORMAT` of the rpm package.
fn rpm_query(format: &str) -> String {
    run("rpm", &["-qp", "--qf", format, package("rpm", "rpm").to_str().unwrap()])
}

/// The deb's files (not directories) and their permissions, from `dpkg-deb --contents`.
fn deb_files() -> BTreeMap<String, String> {
    let listing = run("dpkg-deb", &["--contents", package("debian", "deb").to_str().unwrap()]);
    listing
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[5].trim_start_matches('.').to_string(), fields[0].to_string())
        })
        .collect()
}

/// The rpm's files and their permissions (it lists no directories).
fn rpm_files() -> BTreeMap<String, String> {
    rpm_query("[%{FILENAMES} %{FILEMODES:perms}\n]")
        .lines()
        .map(|line| line.split_once(' ').map(|(p, m)| (p.to_string(), m.to_string())).unwrap())
        .collect()
}

fn extract_deb() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    run("dpkg-deb", &["--extract", package("debian", "deb").to_str().unwrap(), root.path().to_str().unwrap()]);
    root
}

/// The deb's control files: control, conffiles and the maintainer scripts.
fn deb_control() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run("dpkg-deb", &["--control", package("debian", "deb").to_str().unwrap(), dir.path().to_str().unwrap()]);
    dir
}

/// Sets up the overlay: the host's root read-only below, a tmpfs above, and the package
/// bound at /tmp/package; then runs $SCRIPT in it.
const OVERLAY: &str = r#"
mount --make-rprivate /
mount -t tmpfs tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$T/root"
R=$T/root
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs tmpfs "$R/tmp"
mount -t tmpfs tmpfs "$R/run"
touch "$R/tmp/package"
mount --bind "$PACKAGE" "$R/tmp/package"
exec chroot "$R" /bin/sh -ec "$SCRIPT"
"#;

/// What the tests look at after an installation, as key=value lines.
const FACTS: &str = r#"
echo "passwd=$(getent passwd esi-monitor)"
echo "config=$(stat -c '%U:%G %a' /etc/esi-monitor/config.yaml)"
echo "binary=$(stat -c '%U:%G %a' /usr/bin/esi-monitor)"
echo "unit=$(stat -c '%U:%G %a' /usr/lib/systemd/system/esi-monitor.service)"
echo "config_text=$(head -n 1 /etc/esi-monitor/config.yaml)"
wants=/etc/systemd/system/multi-user.target.wants/esi-monitor.service
if [ -e "$wants" ]; then echo enabled=yes; else echo enabled=no; fi
"#;

/// Installs the newest package of `sub` with `script` in a throwaway overlay; the facts
/// the script prints afterwards, as key=value.
fn install(sub: &str, ext: &str, script: &str) -> BTreeMap<String, String> {
    let overlay = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--mount-proc", "sh", "-ec", OVERLAY])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("T", overlay.path())
        .env("PACKAGE", package(sub, ext))
        .env("SCRIPT", format!("{script}\n{FACTS}"))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "installing the {ext} in an overlay (needs root for the mount namespace): {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Installing with `script` creates the system user with `shell` and lays down the files
/// with their owners and modes.
fn assert_installs_user_and_files(sub: &str, ext: &str, script: &str, shell: &str) {
    let facts = install(sub, ext, script);
    let passwd: Vec<&str> = facts["passwd"].split(':').collect();
    assert_eq!(passwd.len(), 7, "no esi-monitor user: {facts:?}");
    assert_eq!((passwd[0], passwd[5], passwd[6]), ("esi-monitor", "/nonexistent", shell), "{facts:?}");
    assert!(passwd[2].parse::<u32>().unwrap() < 1000, "not a system user: {facts:?}");
    assert_installed_files(&facts);
}

fn assert_installed_files(facts: &BTreeMap<String, String>) {
    assert_eq!(facts["config"], "root:esi-monitor 640");
    assert_eq!(facts["binary"], "root:root 755");
    assert_eq!(facts["unit"], "root:root 644");
}
