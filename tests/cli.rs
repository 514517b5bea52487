//! The operator CLI: `edgeward verify` verdicts, reason codes and exit statuses.

use jwt_simple::prelude::*;
use std::path::PathBuf;
use std::process::Command;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    dir: PathBuf,
    key: Ed25519KeyPair,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("edgeward-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Test-only key, generated per run.
        let key = Ed25519KeyPair::generate().with_key_id("cli-1");
        let x = Base64UrlSafeNoPadding::encode_to_string(key.public_key().to_bytes()).unwrap();
        let config = serde_json::json!({
            "issuers": [{
                "issuer": "https://issuer.test",
                "audiences": ["api://cli"],
                "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "cli-1", "alg": "EdDSA", "use": "sig"}]},
                "algorithms": ["EdDSA"]
            }],
            "origin": "https://origin.test"
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        Fixture { dir, key }
    }

    fn token(&self, aud: &str, iat: u64, exp: u64) -> String {
        let mut claims = Claims::create(Duration::from_secs(1)).with_issuer("https://issuer.test").with_audience(aud).with_subject("alice");
        claims.issued_at = Some(Duration::from_secs(iat));
        claims.expires_at = Some(Duration::from_secs(exp));
        claims.invalid_before = None;
        self.key.sign(claims).unwrap()
    }

    fn run(&self, token: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let tf = self.dir.join("token.txt");
        std::fs::write(&tf, format!("{token}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
            .args(["verify", "--config"])
            .arg(self.dir.join("config.json"))
            .arg("--token-file")
            .arg(&tf)
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}"));
        (out.status.code().unwrap(), v)
    }
}

#[test]
fn accepts_a_valid_token_with_exit_0() {
    let f = Fixture::new("accept");
    let t = f.token("api://cli", NOW - 10, NOW + 600);
    let (code, v) = f.run(&t, &["--now", &NOW.to_string()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "accept");
    assert_eq!(v["claims"]["sub"], "alice");
    assert_eq!(v["kid"], "cli-1");
    assert!(!v.to_string().contains(&t), "the token itself is never printed");
}

#[test]
fn rejects_with_reason_and_exit_1() {
    let f = Fixture::new("reject");
    let now = NOW.to_string();
    let cases = [
        (f.token("api://cli", NOW - 7200, NOW - 3600), "expired"),
        (f.token("api://other", NOW - 10, NOW + 600), "audience_mismatch"),
        ("not-a-token".to_string(), "malformed_token"),
    ];
    for (token, reason) in cases {
        let (code, v) = f.run(&token, &["--now", &now]);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["verdict"], "reject");
        assert_eq!(v["reason"], reason);
    }
    // Tampered: flip one character of the signature.
    let mut t = f.token("api://cli", NOW - 10, NOW + 600).into_bytes();
    let last = t.len() - 2;
    t[last] = if t[last] == b'A' { b'B' } else { b'A' };
    let (code, v) = f.run(&String::from_utf8(t).unwrap(), &["--now", &now]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("bad_signature")));
}

#[test]
fn the_now_flag_moves_the_clock() {
    let f = Fixture::new("now");
    let t = f.token("api://cli", NOW - 10, NOW + 600);
    let (code, v) = f.run(&t, &["--now", &(NOW + 600 + 60).to_string()]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("expired")));
    let (code, _) = f.run(&t, &["--now", &(NOW + 600 + 59).to_string()]);
    assert_eq!(code, 0, "within the 60 s default leeway");
}

#[test]
fn usage_and_config_errors_exit_2() {
    let f = Fixture::new("usage");
    let (code, v) = f.run("x", &["--bogus"]);
    assert_eq!((code, v["reason"].as_str()), (2, Some("usage")));
    let (code, v) = f.run("x", &["--now", "yesterday"]);
    assert_eq!((code, v["reason"].as_str()), (2, Some("usage")));
    std::fs::write(f.dir.join("config.json"), r#"{"issuers": [], "origin": "https://o"}"#).unwrap();
    let (code, v) = f.run("x", &[]);
    assert_eq!((code, v["verdict"].as_str(), v["reason"].as_str(), v["field"].as_str()), (2, Some("error"), Some("config_invalid"), Some("issuers")));
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
