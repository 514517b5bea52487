//! The `logging` section: what a decision record says about the client (`client_ip`: the address
//! in full, truncated to its /24 or /48 (default), as a keyed hash, or not at all) and which
//! accepted requests are logged (`accepted`: all (default), a sample, or none — refusals, admin
//! calls and alerts are always logged). Pure: the pipeline passes the hash key it read.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::net::IpAddr;

/// How the client address appears in a decision record.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientIpMode {
    /// As received.
    Full,
    /// Its /24 (IPv4) or /48 (IPv6) network.
    #[default]
    Truncated,
    /// HMAC-SHA-256 under the Worker secret `logging.ip_hash_secret` (16 hex digits): the same
    /// client is recognisable across records, its address is not readable. Without the secret,
    /// nothing is logged.
    Hashed,
    /// Not logged.
    None,
}

/// `logging.accepted` as written: `"all"`, `"none"` or `{"sample": RATE}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AcceptedConfig {
    /// `"all"` or `"none"`.
    Word(String),
    /// `{"sample": RATE}`, 0 < RATE ≤ 1.
    Sample {
        /// The share of accepted requests logged.
        sample: f64,
    },
}

impl Default for AcceptedConfig {
    fn default() -> Self {
        AcceptedConfig::Word("all".into())
    }
}

/// The `logging` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// How the client address appears.
    pub client_ip: ClientIpMode,
    /// Which accepted requests are logged.
    pub accepted: AcceptedConfig,
    /// The Worker secret the `hashed` mode keys its HMAC with (default `EDGEWARD_LOG_IP_KEY`).
    pub ip_hash_secret: Option<String>,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingPolicy {
    /// How the client address appears.
    pub client_ip: ClientIpMode,
    /// The share of accepted requests logged (1: all, 0: none).
    pub accepted_rate: f64,
    /// The Worker secret of the `hashed` mode.
    pub ip_hash_secret: String,
}

impl Default for LoggingPolicy {
    fn default() -> Self {
        LoggingPolicy { client_ip: ClientIpMode::Truncated, accepted_rate: 1.0, ip_hash_secret: "EDGEWARD_LOG_IP_KEY".into() }
    }
}

impl LoggingConfig {
    /// Validates the section. The error is (field, message).
    pub fn validate(self) -> Result<LoggingPolicy, (String, String)> {
        let accepted_rate = match self.accepted {
            AcceptedConfig::Word(w) if w == "all" => 1.0,
            AcceptedConfig::Word(w) if w == "none" => 0.0,
            AcceptedConfig::Sample { sample } if sample > 0.0 && sample <= 1.0 => sample,
            _ => return Err(("logging.accepted".into(), "\"all\", \"none\" or {\"sample\": RATE} with 0 < RATE <= 1".into())),
        };
        Ok(LoggingPolicy { client_ip: self.client_ip, accepted_rate, ip_hash_secret: self.ip_hash_secret.unwrap_or_else(|| "EDGEWARD_LOG_IP_KEY".into()) })
    }
}

impl LoggingPolicy {
    /// The client address as the record shows it (`key`: the `hashed` mode's secret).
    pub fn client_ip(&self, ip: IpAddr, key: Option<&[u8]>) -> Option<String> {
        match self.client_ip {
            ClientIpMode::Full => Some(ip.to_string()),
            ClientIpMode::Truncated => Some(match ip {
                IpAddr::V4(a) => {
                    let o = a.octets();
                    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
                }
                IpAddr::V6(a) => {
                    let s = a.segments();
                    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
                }
            }),
            ClientIpMode::Hashed => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key?).ok()?;
                mac.update(ip.to_string().as_bytes());
                Some(hex::encode(&mac.finalize().into_bytes()[..8]))
            }
            ClientIpMode::None => None,
        }
    }

    /// Whether an accepted request with this id is logged: all, none, or a sample chosen by the
    /// id's hash (the same request always the same way).
    pub fn logs_accepted(&self, request_id: &str) -> bool {
        if self.accepted_rate >= 1.0 {
            return true;
        }
        (super::log::sha256_64(request_id.as_bytes()) as f64) < self.accepted_rate * (u64::MAX as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> Result<LoggingPolicy, (String, String)> {
        serde_json::from_value::<LoggingConfig>(v).map_err(|e| ("logging".to_string(), e.to_string()))?.validate()
    }

    #[test]
    fn client_ip_modes() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        let p = |m: &str| policy(serde_json::json!({"client_ip": m})).unwrap();
        assert_eq!(p("full").client_ip(v4, None).as_deref(), Some("203.0.113.77"));
        assert_eq!(LoggingPolicy::default().client_ip(v4, None).as_deref(), Some("203.0.113.0/24"));
        assert_eq!(LoggingPolicy::default().client_ip(v6, None).as_deref(), Some("2001:db8:abcd::/48"));
        assert_eq!(p("none").client_ip(v4, None), None);
        let h = p("hashed");
        assert_eq!(h.client_ip(v4, None), None, "no key: nothing");
        let a = h.client_ip(v4, Some(b"k1")).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(h.client_ip(v4, Some(b"k1")).unwrap(), a, "stable");
        assert_ne!(h.client_ip(v4, Some(b"k2")).unwrap(), a, "keyed");
        assert!(!a.contains("203"));
    }

    #[test]
    fn accepted_sampling() {
        assert!(policy(serde_json::json!({})).unwrap().logs_accepted("x"));
        assert!(!policy(serde_json::json!({"accepted": "none"})).unwrap().logs_accepted("x"));
        let s = policy(serde_json::json!({"accepted": {"sample": 0.1}})).unwrap();
        let kept = (0..10_000).filter(|i| s.logs_accepted(&format!("req-{i}"))).count();
        assert!((800..1200).contains(&kept), "{kept}");
        for bad in [serde_json::json!({"accepted": "some"}), serde_json::json!({"accepted": {"sample": 0}}), serde_json::json!({"accepted": {"sample": 2}})] {
            assert!(policy(bad).is_err());
        }
    }
}
