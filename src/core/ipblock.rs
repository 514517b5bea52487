//! Client addresses the gate refuses before it reads anything else of a request
//! (`403 ip_blocked`): blocks added by an operator (`POST {admin}/blocks`) or by an alert rule's
//! automatic response (`"action": {"block_ip_secs": N}`), each until its expiry.
//!
//! A block's `target` is written the way decision records and alerts show a client
//! (`logging.client_ip`), so an alert's subject can be blocked as it stands:
//! - an address (`203.0.113.7`, `2001:db8::1`): that address;
//! - a prefix (`203.0.113.0/24`, `2001:db8:1::/48`: what `truncated` logging shows), `/8`–`/32`
//!   for IPv4 and `/16`–`/128` for IPv6: every address in it;
//! - 16 hex digits (what `hashed` logging shows: a keyed HMAC of the address): the address whose
//!   HMAC under the gate's `logging.ip_hash_secret` it is.
//!
//! The control Worker's ledger keeps the blocks and publishes the active ones to KV under
//! [`BLOCKS_KEY`] (JSON, [`BlockList`]); each isolate reads it on first use and again every
//! `ip_blocks.refresh_secs` in the background. It is a separate value from the revocation list,
//! so gates of earlier versions (which refuse a revocation snapshot holding a kind they do not
//! know) are not disturbed by it. Unlike revocations, the block list fails open: an isolate that
//! cannot read it keeps the copy it has (or none) and logs `ip_blocks_read_failed` — a block
//! only shortens an abuser's path to the checks every request gets anyway.
//!
//! Bounded: at most [`MAX_BLOCKS`] active blocks (the ledger refuses more), so the published
//! value stays under [`MAX_BLOCKS_BYTES`]. Pure: `now` is a parameter.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// KV key of the published block list.
pub const BLOCKS_KEY: &str = "ip-blocks:v1";
/// Most active blocks the ledger keeps.
pub const MAX_BLOCKS: usize = 10_000;
/// Largest published block list read (10,000 blocks of at most ~100 bytes each).
pub const MAX_BLOCKS_BYTES: usize = 2 * 1024 * 1024;
/// Longest a block may last (30 days).
pub const MAX_BLOCK_SECS: i64 = 30 * 24 * 3600;

/// `ip_blocks` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlocksConfig {
    /// Read and enforce the published block list (default true; needs the KV binding).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How old the isolate's copy may get before it is re-read in the background (seconds).
    #[serde(default = "refresh_default")]
    pub refresh_secs: u32,
}

fn yes() -> bool {
    true
}
fn refresh_default() -> u32 {
    10
}

impl Default for IpBlocksConfig {
    fn default() -> Self {
        IpBlocksConfig { enabled: true, refresh_secs: refresh_default() }
    }
}

impl IpBlocksConfig {
    /// Checks the section; the error is (field, message).
    pub fn validate(self) -> Result<IpBlocksConfig, (String, String)> {
        if !(1..=3600).contains(&self.refresh_secs) {
            return Err(("ip_blocks.refresh_secs".into(), "must be 1 to 3600".into()));
        }
        Ok(self)
    }
}

/// What a block names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockTarget {
    /// One address.
    Addr(IpAddr),
    /// Every address in a prefix: (is IPv6, prefix length, the network as a 128-bit number).
    Prefix(bool, u8, u128),
    /// The address whose `hashed` logging form this is.
    Hashed([u8; 8]),
}

fn bits_of(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn network(v6: bool, len: u8, bits: u128) -> u128 {
    let width = if v6 { 128 } else { 32 };
    let host = width - u32::from(len);
    if host >= 128 {
        0
    } else {
        (bits >> host) << host
    }
}

impl BlockTarget {
    /// Reads a target (see the module docs); the error says what is wrong.
    pub fn parse(text: &str) -> Result<BlockTarget, String> {
        let t = text.trim();
        if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            let mut h = [0u8; 8];
            hex::decode_to_slice(t, &mut h).map_err(|_| "bad hex".to_string())?;
            return Ok(BlockTarget::Hashed(h));
        }
        if let Some((addr, len)) = t.split_once('/') {
            let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
            let mut len: u8 = len.parse().map_err(|_| format!("{len:?} is not a prefix length"))?;
            // An IPv4-mapped prefix names IPv4 addresses, which is how the gate sees those clients.
            let ip = match ip {
                IpAddr::V6(a) if len >= 96 && a.to_ipv4_mapped().is_some() => {
                    len -= 96;
                    a.to_ipv4_mapped().map_or(ip, IpAddr::V4)
                }
                other => other,
            };
            let (v6, bits) = bits_of(ip);
            let (lo, hi) = if v6 { (16, 128) } else { (8, 32) };
            if !(lo..=hi).contains(&len) {
                return Err(format!("an IPv{} prefix must be /{lo} to /{hi}", if v6 { 6 } else { 4 }));
            }
            if len == hi {
                return Ok(BlockTarget::Addr(ip));
            }
            return Ok(BlockTarget::Prefix(v6, len, network(v6, len, bits)));
        }
        match t.parse::<IpAddr>() {
            // An IPv4-mapped address is the IPv4 client the gate sees.
            Ok(IpAddr::V6(a)) if a.to_ipv4_mapped().is_some() => Ok(BlockTarget::Addr(a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4))),
            Ok(ip) => Ok(BlockTarget::Addr(ip)),
            Err(_) => Err("an IP address, a prefix (address/length) or the 16 hex digits of a hashed address".to_string()),
        }
    }

    /// The target's one spelling (prefixes at their network address): what the ledger stores
    /// and lists.
    pub fn canonical(&self) -> String {
        match *self {
            BlockTarget::Addr(ip) => ip.to_string(),
            BlockTarget::Prefix(false, len, net) => format!("{}/{len}", std::net::Ipv4Addr::from(net as u32)),
            BlockTarget::Prefix(true, len, net) => format!("{}/{len}", std::net::Ipv6Addr::from(net)),
            BlockTarget::Hashed(h) => hex::encode(h),
        }
    }

    /// The id under which the admin API names this block: [`Self::canonical`] with `/` as `_`
    /// (a path segment).
    pub fn id(&self) -> String {
        self.canonical().replace('/', "_")
    }
}

/// One block as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// What is blocked ([`BlockTarget::parse`]).
    pub target: String,
    /// Until when (Unix seconds).
    pub expires_at: i64,
}

/// The published list (`ip-blocks:v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    /// The ledger's block version (grows with each change).
    pub version: u64,
    /// The active blocks.
    pub blocks: Vec<Block>,
}

/// The isolate's lookup form of a [`BlockList`]: every block as a (kind, value) key with its
/// expiry in one sorted vector (binary search), and the prefix lengths present per family.
#[derive(Debug, Default)]
pub struct BlockSet {
    version: u64,
    /// ((kind, value), expires_at), sorted by key, one entry per key (the latest expiry).
    /// Kinds: [`K_V4`]/[`K_V6`] + prefix length for addresses and prefixes, [`K_HASHED`].
    entries: Vec<((u16, u128), i64)>,
    /// The prefix lengths present (shorter than a whole address), per family.
    lengths: [Vec<u8>; 2],
}

const K_V4: u16 = 0;
const K_V6: u16 = 256;
const K_HASHED: u16 = 512;

fn key_of(t: BlockTarget) -> (u16, u128) {
    match t {
        BlockTarget::Addr(ip) => {
            let (v6, bits) = bits_of(ip);
            if v6 {
                (K_V6 + 128, bits)
            } else {
                (K_V4 + 32, bits)
            }
        }
        BlockTarget::Prefix(v6, len, net) => (if v6 { K_V6 } else { K_V4 } + u16::from(len), net),
        BlockTarget::Hashed(h) => (K_HASHED, u128::from(u64::from_be_bytes(h))),
    }
}

impl BlockSet {
    /// Builds the lookup form; entries already expired or unreadable are left out (and counted).
    pub fn from_list(list: &BlockList, now: i64) -> (BlockSet, usize) {
        let mut skipped = 0;
        let mut entries = Vec::new();
        let mut lengths: [Vec<u8>; 2] = Default::default();
        for b in list.blocks.iter().take(MAX_BLOCKS) {
            let Ok(t) = BlockTarget::parse(&b.target) else {
                skipped += 1;
                continue;
            };
            if b.expires_at <= now {
                continue;
            }
            if let BlockTarget::Prefix(v6, len, _) = t {
                lengths[usize::from(v6)].push(len);
            }
            entries.push((key_of(t), b.expires_at));
        }
        // By key, the latest expiry first; then one entry per key.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by_key(|e| e.0);
        for l in &mut lengths {
            l.sort_unstable();
            l.dedup();
        }
        (BlockSet { version: list.version, entries, lengths }, skipped)
    }

    /// The list's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Active blocks held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no block.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `ip` (with its `hashed` logging form, when there is one) is blocked at `now`.
    pub fn blocks(&self, ip: IpAddr, hashed: Option<&str>, now: i64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let live = |key: (u16, u128)| self.entries.binary_search_by(|e| e.0.cmp(&key)).is_ok_and(|i| self.entries[i].1 > now);
        let (v6, bits) = bits_of(ip);
        let (base, width) = if v6 { (K_V6, 128) } else { (K_V4, 32) };
        if live((base + width, bits)) || self.lengths[usize::from(v6)].iter().any(|&len| live((base + u16::from(len), network(v6, len, bits)))) {
            return true;
        }
        let mut h = [0u8; 8];
        hashed.is_some_and(|s| hex::decode_to_slice(s, &mut h).is_ok() && live((K_HASHED, u128::from(u64::from_be_bytes(h)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(blocks: &[(&str, i64)]) -> BlockList {
        BlockList { version: 3, blocks: blocks.iter().map(|(t, e)| Block { target: (*t).into(), expires_at: *e }).collect() }
    }

    #[test]
    fn targets_read_in_each_form_and_have_one_spelling() {
        for (given, canonical) in [
            ("203.0.113.7", "203.0.113.7"),
            (" 203.0.113.9/24", "203.0.113.0/24"),
            ("203.0.113.9/32", "203.0.113.9"),
            ("2001:db8:1:2::5/48", "2001:db8:1::/48"),
            ("2001:DB8::1", "2001:db8::1"),
            ("00ff00ff00ff00ff", "00ff00ff00ff00ff"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("::ffff:203.0.113.7/120", "203.0.113.0/24"),
        ] {
            assert_eq!(BlockTarget::parse(given).map(|t| t.canonical()), Ok(canonical.to_string()), "{given}");
        }
        assert_eq!(BlockTarget::parse("203.0.113.0/24").unwrap().id(), "203.0.113.0_24");
        for bad in ["", "203.0.113", "203.0.113.0/7", "203.0.113.0/33", "::/8", "10.0.0.0/x", "00FF00FF00FF00FF", "00ff00ff00ff00f", "example.com"] {
            assert!(BlockTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_prefixes_and_hashed_forms_block_until_they_expire() {
        let l =
            list(&[("203.0.113.7", 200), ("198.51.100.0/24", 300), ("2001:db8:1::/48", 300), ("0123456789abcdef", 300), ("not an ip", 900), ("192.0.2.1", 50)]);
        let (set, skipped) = BlockSet::from_list(&l, 100);
        assert_eq!((skipped, set.len(), set.version()), (1, 4, 3), "one unreadable, one expired");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(set.blocks(ip("203.0.113.7"), None, 100));
        assert!(!set.blocks(ip("203.0.113.8"), None, 100));
        assert!(set.blocks(ip("198.51.100.250"), None, 100));
        assert!(!set.blocks(ip("198.51.101.1"), None, 100));
        assert!(set.blocks(ip("2001:db8:1:ffff::1"), None, 100));
        assert!(!set.blocks(ip("2001:db8:2::1"), None, 100));
        assert!(!set.blocks(ip("192.0.2.1"), None, 100), "expired before it was read");
        assert!(set.blocks(ip("10.1.1.1"), Some("0123456789abcdef"), 100));
        assert!(!set.blocks(ip("10.1.1.1"), Some("0123456789abcdee"), 100));
        // Each ends at its expiry.
        assert!(!set.blocks(ip("203.0.113.7"), None, 200));
        assert!(set.blocks(ip("198.51.100.1"), None, 299));
        assert!(!set.blocks(ip("198.51.100.1"), None, 300));
        // An IPv4-mapped IPv6 address is another address (the runtime gives v4 clients as v4).
        assert!(!set.blocks(ip("::ffff:203.0.113.7"), None, 100));
    }

    #[test]
    fn the_list_is_json_and_bounded() {
        let l = list(&[("203.0.113.7", 200)]);
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(text, r#"{"version":3,"blocks":[{"target":"203.0.113.7","expires_at":200}]}"#);
        let many = BlockList {
            version: 1,
            blocks: (0..MAX_BLOCKS as u32 + 5).map(|i| Block { target: std::net::Ipv4Addr::from(i).to_string(), expires_at: 10 }).collect(),
        };
        assert_eq!(BlockSet::from_list(&many, 0).0.len(), MAX_BLOCKS);
        assert!(serde_json::to_string(&many).unwrap().len() < MAX_BLOCKS_BYTES);
        assert_eq!(IpBlocksConfig { enabled: true, refresh_secs: 0 }.validate().unwrap_err().0, "ip_blocks.refresh_secs");
    }
}
