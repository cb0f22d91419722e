//! SNMPv3's User-based Security Model (RFC 3414, RFC 7860 for SHA-2, RFC 3826 for AES):
//! keys from passwords, keys localized to an engine, HMAC digests, and DES/AES privacy.
//!
//! It exists so that the rest of the SNMP plugin sees two operations, "protect this
//! message for that engine" and "check and open this message", while the cryptography
//! lives in one place. A password is turned into its key (`Ku`, a million bytes hashed)
//! once per profile; localizing `Ku` to an engine is one hash, cached by the caller per
//! engine. Keys are secrets like passwords: their `Debug` never shows them.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use cipher::{AsyncStreamCipher, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Mac, SimpleHmac};
use sha2::Digest;

/// An authentication protocol (usmHMACMD5AuthProtocol … usmHMAC384SHA512AuthProtocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// A privacy protocol. AES-192/256 keys longer than the hash are extended as net-snmp
/// does (Blumenthal), or as Cisco does (`…c`, Reeder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    None,
    Des,
    Aes128,
    Aes192,
    Aes256,
    Aes192C,
    Aes256C,
}

impl Auth {
    /// The names of `snmp.credentials`' `auth_protocol`.
    pub fn named(name: &str) -> Option<Auth> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => Auth::Md5,
            "sha" | "sha1" => Auth::Sha1,
            "sha224" => Auth::Sha224,
            "sha256" => Auth::Sha256,
            "sha384" => Auth::Sha384,
            "sha512" => Auth::Sha512,
            _ => return None,
        })
    }

    /// Octets of msgAuthenticationParameters (the truncated HMAC).
    pub fn mac_len(self) -> usize {
        match self {
            Auth::Md5 | Auth::Sha1 => 12,
            Auth::Sha224 => 16,
            Auth::Sha256 => 24,
            Auth::Sha384 => 32,
            Auth::Sha512 => 48,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn h<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Auth::Md5 => h::<md5::Md5>(parts),
            Auth::Sha1 => h::<sha1::Sha1>(parts),
            Auth::Sha224 => h::<sha2::Sha224>(parts),
            Auth::Sha256 => h::<sha2::Sha256>(parts),
            Auth::Sha384 => h::<sha2::Sha384>(parts),
            Auth::Sha512 => h::<sha2::Sha512>(parts),
        }
    }

    /// The HMAC of `msg` under `key`, truncated to `mac_len`.
    fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn m<D: Digest + hmac::digest::core_api::BlockSizeUser>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        let mut out = match self {
            Auth::Md5 => m::<md5::Md5>(key, msg),
            Auth::Sha1 => m::<sha1::Sha1>(key, msg),
            Auth::Sha224 => m::<sha2::Sha224>(key, msg),
            Auth::Sha256 => m::<sha2::Sha256>(key, msg),
            Auth::Sha384 => m::<sha2::Sha384>(key, msg),
            Auth::Sha512 => m::<sha2::Sha512>(key, msg),
        };
        out.truncate(self.mac_len());
        out
    }

    /// Ku of RFC 3414 A.2: the password repeated over 1,048,576 octets, hashed.
    pub fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        const TOTAL: usize = 1 << 20;
        if password.is_empty() {
            return self.hash(&[]);
        }
        // 64 copies: a whole number of both the password and the 64-octet blocks.
        let pattern = password.repeat(64);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(TOTAL / pattern.len() + 1);
        let mut left = TOTAL;
        while left > 0 {
            let n = left.min(pattern.len());
            parts.push(&pattern[..n]);
            left -= n;
        }
        self.hash(&parts)
    }

    /// Kul: `Ku` localized to an engine, H(Ku ‖ engineID ‖ Ku).
    pub fn localize(self, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        self.hash(&[ku, engine_id, ku])
    }
}

impl Privacy {
    /// The names of `snmp.credentials`' `priv_protocol`.
    pub fn named(name: &str) -> Option<Privacy> {
        Some(match name.to_ascii_lowercase().as_str() {
            "none" | "" => Privacy::None,
            "des" => Privacy::Des,
            "aes" | "aes128" => Privacy::Aes128,
            "aes192" => Privacy::Aes192,
            "aes256" => Privacy::Aes256,
            "aes192c" => Privacy::Aes192C,
            "aes256c" => Privacy::Aes256C,
            _ => return None,
        })
    }

    /// Octets of the localized privacy key (DES: 8 of key and 8 of pre-IV).
    fn key_len(self) -> usize {
        match self {
            Privacy::None => 0,
            Privacy::Des | Privacy::Aes128 => 16,
            Privacy::Aes192 | Privacy::Aes192C => 24,
            Privacy::Aes256 | Privacy::Aes256C => 32,
        }
    }

    /// The privacy key for an engine from the privacy password's `Ku`.
    pub fn localize(self, auth: Auth, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
        let need = self.key_len();
        let mut key = auth.localize(ku, engine_id);
        while key.len() < need {
            let more = match self {
                Privacy::Aes192C | Privacy::Aes256C => auth.localize(&auth.password_to_key(&key), engine_id),
                _ => auth.hash(&[&key]),
            };
            key.extend_from_slice(&more);
        }
        key.truncate(need);
        key
    }

    /// Encrypts a scopedPDU; the second value is msgPrivacyParameters (the salt).
    pub fn encrypt(self, key: &[u8], boots: i64, time: i64, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let salt = next_salt();
        match self {
            Privacy::None => (plain.to_vec(), Vec::new()),
            Privacy::Des => {
                let salt = [(boots as u32).to_be_bytes(), (salt as u32).to_be_bytes()].concat();
                let iv = des_iv(key, &salt);
                let mut buf = plain.to_vec();
                buf.resize(plain.len().div_ceil(8) * 8, 0);
                let n = buf.len();
                let enc = cbc::Encryptor::<des::Des>::new_from_slices(&key[..8], &iv).expect("DES key and IV of 8 octets");
                let _ = enc.encrypt_padded_mut::<cipher::block_padding::NoPadding>(&mut buf, n);
                (buf, salt)
            }
            _ => {
                let salt = salt.to_be_bytes().to_vec();
                let iv = aes_iv(boots, time, &salt);
                let mut buf = plain.to_vec();
                match key.len() {
                    16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv).expect("AES-128 key").encrypt(&mut buf),
                    24 => cfb_mode::Encryptor::<aes::Aes192>::new_from_slices(key, &iv).expect("AES-192 key").encrypt(&mut buf),
                    _ => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv).expect("AES-256 key").encrypt(&mut buf),
                }
                (buf, salt)
            }
        }
    }

    /// Decrypts an encryptedPDU with its msgPrivacyParameters; `None` when they are unusable.
    pub fn decrypt(self, key: &[u8], boots: i64, time: i64, params: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        if params.len() != 8 || key.len() != self.key_len() {
            return None;
        }
        let mut buf = data.to_vec();
        match self {
            Privacy::None => return None,
            Privacy::Des => {
                if data.len() % 8 != 0 {
                    return None;
                }
                let iv = des_iv(key, params);
                let dec = cbc::Decryptor::<des::Des>::new_from_slices(&key[..8], &iv).ok()?;
                dec.decrypt_padded_mut::<cipher::block_padding::NoPadding>(&mut buf).ok()?;
            }
            _ => {
                let iv = aes_iv(boots, time, params);
                match key.len() {
                    16 => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, &iv).ok()?.decrypt(&mut buf),
                    24 => cfb_mode::Decryptor::<aes::Aes192>::new_from_slices(key, &iv).ok()?.decrypt(&mut buf),
                    _ => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, &iv).ok()?.decrypt(&mut buf),
                }
            }
        }
        Some(buf)
    }
}

/// DES-CBC's IV: the pre-IV (the key's last 8 octets) XOR the salt.
fn des_iv(key: &[u8], salt: &[u8]) -> [u8; 8] {
    let mut iv = [0u8; 8];
    for (i, b) in iv.iter_mut().enumerate() {
        *b = key[8 + i] ^ salt[i];
    }
    iv
}

/// AES-CFB's IV: engineBoots ‖ engineTime ‖ the 64-bit salt.
fn aes_iv(boots: i64, time: i64, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(time as u32).to_be_bytes());
    iv[8..].copy_from_slice(&salt[..8]);
    iv
}

/// A salt never used before by this process, from a random start.
fn next_salt() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u64);
    start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An SNMPv3 user of `snmp.credentials`, its passwords already turned into keys.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub auth: Auth,
    auth_ku: Vec<u8>,
    pub privacy: Privacy,
    priv_ku: Vec<u8>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({} {:?}/{:?}, keys not shown)", self.name, self.auth, self.privacy)
    }
}

/// A user's keys localized to one engine.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub auth: Auth,
    auth_key: Vec<u8>,
    pub privacy: Privacy,
    priv_key: Vec<u8>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({:?}/{:?}, not shown)", self.auth, self.privacy)
    }
}

impl User {
    pub fn new(name: &str, auth: Auth, auth_password: &str, privacy: Privacy, priv_password: &str) -> User {
        let priv_ku = match privacy {
            Privacy::None => Vec::new(),
            _ => auth.password_to_key(priv_password.as_bytes()),
        };
        User { name: name.to_string(), auth, auth_ku: auth.password_to_key(auth_password.as_bytes()), privacy, priv_ku }
    }

    pub fn localize(&self, engine_id: &[u8]) -> Keys {
        Keys {
            auth: self.auth,
            auth_key: self.auth.localize(&self.auth_ku, engine_id),
            privacy: self.privacy,
            priv_key: match self.privacy {
                Privacy::None => Vec::new(),
                p => p.localize(self.auth, &self.priv_ku, engine_id),
            },
        }
    }

    /// msgFlags of this user's requests (reportable added by the caller).
    pub fn flags(&self) -> u8 {
        match self.privacy {
            Privacy::None => super::message::FLAG_AUTH,
            _ => super::message::FLAG_AUTH | super::message::FLAG_PRIV,
        }
    }
}

impl Keys {
    /// Writes the digest of `msg` into `at` (which holds zeros).
    pub fn sign(&self, msg: &mut [u8], at: Range<usize>) {
        let mac = self.auth.hmac(&self.auth_key, msg);
        msg[at].copy_from_slice(&mac);
    }

    /// Whether the digest at `at` of `msg` is right.
    pub fn verify(&self, msg: &[u8], at: Range<usize>) -> bool {
        if at.len() != self.auth.mac_len() || at.end > msg.len() {
            return false;
        }
        let got = msg[at.clone()].to_vec();
        let mut zeroed = msg.to_vec();
        zeroed[at].fill(0);
        let want = self.auth.hmac(&self.auth_key, &zeroed);
        // Every octet compared, whatever the first difference.
        want.iter().zip(&got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    pub fn encrypt(&self, boots: i64, time: i64, plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.privacy.encrypt(&self.priv_key, boots, time, plain)
    }

    pub fn decrypt(&self, boots: i64, time: i64, params: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        self.privacy.decrypt(&self.priv_key, boots, time, params, data)
    }

    /// The content of the scopedPDU an encrypted v3 message carries (its SEQUENCE, without
    /// DES's padding), decrypted with the boots and time the message names.
    pub fn open(&self, m: &super::message::V3<'_>) -> Option<Vec<u8>> {
        let plain = self.decrypt(m.usm.boots, m.usm.time, m.usm.privacy, m.data)?;
        match super::ber::Reader::new(&plain).tlv()? {
            (super::ber::SEQUENCE, content, _) => Some(content.to_vec()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RFC 3414 A.3.1/A.3.2: "maplesyrup", engine 00…02.
    #[test]
    fn keys_of_rfc_3414() {
        let engine = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let md5 = Auth::Md5.password_to_key(b"maplesyrup");
        assert_eq!(hex(&md5), "9faf3283884e92834ebc9847d8edd963");
        assert_eq!(hex(&Auth::Md5.localize(&md5, &engine)), "526f5eed9fcce26f8964c2930787d82b");
        let sha = Auth::Sha1.password_to_key(b"maplesyrup");
        assert_eq!(hex(&sha), "9fb5cc0381497b3793528939ff788d5d79145211");
        assert_eq!(hex(&Auth::Sha1.localize(&sha, &engine)), "6695febc9288e36282235fc7151f128497b38f3f");
    }

    /// SHA-2 keys of "maplesyrup" for the same engine, as computed apart (Python's hashlib).
    #[test]
    fn sha2_keys() {
        let engine = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let ku = Auth::Sha256.password_to_key(b"maplesyrup");
        assert_eq!(hex(&ku), "ab51014d1e077f6017df2b12bee5f5aa72993177e9bb569c4dff5a4ca0b4afac");
        assert_eq!(hex(&Auth::Sha256.localize(&ku, &engine)), "8982e0e549e866db361a6b625d84cccc11162d453ee8ce3a6445c2d6776f0f8b");
        let ku = Auth::Sha512.password_to_key(b"maplesyrup");
        assert_eq!(
            hex(&Auth::Sha512.localize(&ku, &engine)),
            "22a5a36cedfcc085807a128d7bc6c2382167ad6c0dbc5fdff856740f3d84c099\
             ad1ea87a8db096714d9788bd544047c9021e4229ce27e4c0a69250adfcffbb0b"
        );
    }

    #[test]
    fn digests_detect_any_change() {
        let keys = User::new("u", Auth::Sha256, "authpass1", Privacy::None, "").localize(b"engine");
        let mut msg = b"0123456789 message with room for the digest: ________________________ end".to_vec();
        let at = 45..69;
        msg[at.clone()].fill(0);
        keys.sign(&mut msg, at.clone());
        assert!(keys.verify(&msg, at.clone()));
        for i in [0, 20, 50, msg.len() - 1] {
            let mut bad = msg.clone();
            bad[i] ^= 1;
            assert!(!keys.verify(&bad, at.clone()), "octet {i} changed");
        }
        let other = User::new("u", Auth::Sha256, "authpass2", Privacy::None, "").localize(b"engine");
        assert!(!other.verify(&msg, at), "another password");
    }

    #[test]
    fn privacy_round_trips() {
        for p in [Privacy::Des, Privacy::Aes128, Privacy::Aes192, Privacy::Aes256, Privacy::Aes192C, Privacy::Aes256C] {
            let keys = User::new("u", Auth::Sha1, "authpass1", p, "privpass1").localize(b"engine");
            let plain = b"a scoped PDU of some length, not a multiple of eight".to_vec();
            let (cipher, params) = keys.encrypt(7, 1000, &plain);
            assert_ne!(cipher[..plain.len()], plain[..], "{p:?} encrypts");
            let back = keys.decrypt(7, 1000, &params, &cipher).expect("decrypts");
            assert_eq!(&back[..plain.len()], &plain[..], "{p:?}");
            let (again, params2) = keys.encrypt(7, 1000, &plain);
            assert_ne!((again, params2), (cipher, params), "{p:?}: a fresh salt every time");
        }
    }
}
