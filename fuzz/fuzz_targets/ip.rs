//! The client IP parser (`canonical::client_ip`), the rate-limit
//! bucket text (`canonical::ip_bucket_text`) and the API-key client range parser
//! (`apikey::Cidr::parse` / `contains`).
//!
//! Input: byte 0 is the IPv6 bucket prefix length; the rest is the `CF-Connecting-IP` header value
//! (also read as a CIDR).
//!
//! Checks: no panic; the parser accepts exactly what the standard parser accepts after trimming,
//! in one form: never an IPv4-mapped IPv6 address (it is returned as IPv4), and its text parses
//! back to the same address (and through `client_ip` again, with surrounding spaces too); the
//! bucket of an IPv4 address is the address; the bucket of an IPv6 address is its network at
//! `min(prefix, 128)` bits, the same for every address of that network and different for an
//! address outside it; a parsed CIDR prints as text that parses back to the same range, contains
//! its own network address, and treats an IPv4 address and its mapped IPv6 form alike.
#![no_main]

mod common;

use common::{flags, text, Rng};
use edgeward::core::apikey::Cidr;
use edgeward::core::canonical::{client_ip, ip_bucket_text};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv6Addr};

fn check_bucket(a: IpAddr, len: u8, rng: &mut Rng) {
    let t = ip_bucket_text(a, len);
    match a {
        IpAddr::V4(v4) => assert_eq!(t, v4.to_string()),
        IpAddr::V6(v6) => {
            let l = u32::from(len.min(128));
            let (addr, pl) = t.split_once('/').unwrap_or_else(|| panic!("bucket {t:?} without prefix"));
            assert_eq!(pl, l.to_string(), "bucket {t:?} for prefix {len}");
            let net: Ipv6Addr = addr.parse().unwrap_or_else(|_| panic!("bucket {t:?} is not an address"));
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            assert_eq!(u128::from(net), u128::from(v6) & mask, "bucket {t:?} is not the network of {v6}");
            if l < 128 {
                let host_bit = 1u128 << rng.below((128 - l) as usize);
                let same = Ipv6Addr::from(u128::from(v6) ^ host_bit);
                assert_eq!(ip_bucket_text(IpAddr::V6(same), len), t, "{same} is in the bucket of {v6}");
            }
            if l > 0 {
                let net_bit = 1u128 << (128 - l + rng.below(l as usize) as u32);
                let other = Ipv6Addr::from(u128::from(v6) ^ net_bit);
                assert_ne!(ip_bucket_text(IpAddr::V6(other), len), t, "{other} shares the bucket of {v6}");
            }
        }
    }
}

fn check_cidr(s: &str, a: Option<IpAddr>) {
    let Some(c) = Cidr::parse(s) else { return };
    let shown = c.to_string();
    assert_eq!(Cidr::parse(&shown), Some(c), "CIDR {s:?} prints as {shown:?}, which does not parse back");
    let net: IpAddr = shown.split('/').next().unwrap().parse().expect("network address");
    assert!(c.contains(net), "{shown} does not contain its network address");
    if let Some(a) = a {
        let alt = match a {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        };
        assert_eq!(c.contains(a), c.contains(alt), "{shown} treats {a} and {alt} differently");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = flags(data) else { return };
    let s = text(rest);
    let s = s.as_ref();
    let mut rng = Rng::from_bytes(data);
    let got = client_ip(Some(s));
    assert_eq!(got, s.trim().parse::<IpAddr>().ok().map(|a| a.to_canonical()), "client_ip({s:?})");
    if let Some(a) = got {
        if let IpAddr::V6(v6) = a {
            assert!(v6.to_ipv4_mapped().is_none(), "mapped address {v6} returned for {s:?}");
        }
        let shown = a.to_string();
        assert_eq!(shown.parse::<IpAddr>().ok(), Some(a), "{a} prints as {shown:?}");
        assert_eq!(client_ip(Some(&shown)), Some(a));
        assert_eq!(client_ip(Some(&format!(" {shown}\t"))), Some(a));
        check_bucket(a, len, &mut rng);
        // Its own text as a host range contains it.
        let c = Cidr::parse(&shown).unwrap_or_else(|| panic!("{shown} is not a host range"));
        assert!(c.contains(a));
    }
    check_cidr(s, got);
});
