//! Credential profiles (SPEC §4.3): what an object's `community_name` stands for, so that
//! the secrets stay in the configuration instead of etcd. A name in `snmp.credentials` is
//! a v2c community or an SNMPv3 user; any other name is itself the v2c community, as
//! before profiles existed. Built once per configuration (a reload builds them again):
//! SNMPv3 passwords are turned into keys here, once.

use std::collections::HashMap;
use std::sync::Arc;

use super::usm::{Auth, Privacy, User};
use crate::config::SnmpCredential;

/// What to speak to a device with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Community(Vec<u8>),
    V3(User),
}

/// The profiles of one configuration.
#[derive(Debug, Default)]
pub struct Profiles {
    named: HashMap<String, Arc<Credential>>,
}

impl Profiles {
    /// From `snmp.credentials` as validated at load (an invalid entry cannot reach here).
    pub fn new(credentials: &std::collections::BTreeMap<String, SnmpCredential>) -> Profiles {
        let named = credentials
            .iter()
            .filter_map(|(name, c)| {
                let credential = match c.version.0.as_str() {
                    "2c" => Credential::Community(c.community.expose().as_bytes().to_vec()),
                    _ => Credential::V3(User::new(
                        &c.user,
                        Auth::named(&c.auth_protocol)?,
                        c.auth_password.expose(),
                        Privacy::named(&c.priv_protocol)?,
                        c.priv_password.expose(),
                    )),
                };
                Some((name.clone(), Arc::new(credential)))
            })
            .collect();
        Profiles { named }
    }

    /// The credential `community_name` stands for.
    pub fn resolve(&self, community_name: &str) -> Arc<Credential> {
        match self.named.get(community_name) {
            Some(c) => Arc::clone(c),
            None => Arc::new(Credential::Community(community_name.as_bytes().to_vec())),
        }
    }

    /// Whether `community` is the community of a v2c profile (a trap with it is valid from
    /// any registered device).
    pub fn is_v2c_community(&self, community: &[u8]) -> bool {
        self.named.values().any(|c| matches!(&**c, Credential::Community(x) if x == community))
    }

    /// The v3 users named `name` (several profiles may share a user name).
    pub fn users(&self, name: &[u8]) -> Vec<&User> {
        self.named
            .values()
            .filter_map(|c| match &**c {
                Credential::V3(u) if u.name.as_bytes() == name => Some(u),
                _ => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}
