//! Host keys of NETCONF devices (SPEC §4.1): pinned by `netconf.known_hosts` (OpenSSH
//! format, `host` or `[host]:port` entries) when set; otherwise the first key seen per
//! host is kept for the life of the process and a different one later is refused.

use ssh2::{CheckResult, HashType, KnownHostFileKind};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct HostKeys {
    /// The known_hosts file, when keys are pinned.
    file: Option<String>,
    /// `host:port` → the key first seen and its fingerprint (trust on first use).
    seen: Mutex<HashMap<String, (Vec<u8>, String)>>,
}

impl HostKeys {
    pub fn new(known_hosts: &str) -> HostKeys {
        let file = (!known_hosts.is_empty()).then(|| known_hosts.to_string());
        HostKeys { file, seen: Mutex::new(HashMap::new()) }
    }

    /// Ok when the key the server of `ssh` presented is the one this host may present.
    pub fn check(&self, ssh: &ssh2::Session, host: &str, port: u16) -> Result<(), String> {
        let (key, _) = ssh.host_key().ok_or("the server sent no host key")?;
        let shown = ssh.host_key_hash(HashType::Sha256).map_or_else(|| "no fingerprint".into(), fingerprint);
        if let Some(path) = &self.file {
            let mut known = ssh.known_hosts().map_err(|e| format!("known hosts: {}", e.message()))?;
            known
                .read_file(std::path::Path::new(path), KnownHostFileKind::OpenSSH)
                .map_err(|e| format!("netconf.known_hosts {path}: {}", e.message()))?;
            return match known.check_port(host, port, key) {
                CheckResult::Match => Ok(()),
                CheckResult::Mismatch => {
                    Err(format!("host key of {host}:{port} ({shown}) differs from the one in netconf.known_hosts {path}"))
                }
                CheckResult::NotFound => Err(format!("host key of {host}:{port} ({shown}) is not in netconf.known_hosts {path}")),
                CheckResult::Failure => Err(format!("checking the host key of {host}:{port} against {path} failed")),
            };
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (first, first_shown) = seen.entry(format!("{host}:{port}")).or_insert_with(|| (key.to_vec(), shown.clone()));
        if first.as_slice() == key {
            return Ok(());
        }
        Err(format!(
            "host key of {host}:{port} changed: first {first_shown}, now {shown}; refused (pin the key in \
             netconf.known_hosts, or restart the service to accept it)"
        ))
    }
}

/// `SHA256:<base64>` of a key's SHA-256 digest, as OpenSSH prints a fingerprint.
pub fn fingerprint(digest: &[u8]) -> String {
    let mut text = base64(digest);
    while text.ends_with('=') {
        text.pop();
    }
    format!("SHA256:{text}")
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_are_unpadded_base64_as_openssh_prints_them() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::fingerprint(b"fo"), "SHA256:Zm8");
    }
}
