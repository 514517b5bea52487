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

/// Runs `edgeward ARGS`: (exit status, stdout, stderr).
fn edgeward(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward")).args(args).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The subcommands a help text lists (its `Commands:` section), but `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_and_subcommand_has_help_and_version() {
    // Walks the tree from the top command's help, so a new subcommand is covered too.
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        let name = std::iter::once("edgeward").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = path.iter().map(String::as_str).chain([flag]).collect();
            let (code, stdout, stderr) = edgeward(&args);
            assert_eq!(code, 0, "{name} {flag}: {stderr}");
            assert!(stderr.is_empty(), "{name} {flag} wrote to stderr: {stderr}");
            assert!(stdout.contains(&format!("Usage: {name}")), "{name} {flag}: {stdout}");
            // One line per option, each with its help text.
            for line in stdout.lines().skip_while(|l| *l != "Options:").skip(1).take_while(|l| !l.is_empty()) {
                let described = line.trim_start().split_once("  ").is_some_and(|(_, text)| !text.trim().is_empty());
                assert!(described, "{name}: an option without help: {line:?}");
            }
        }
        let args: Vec<&str> = path.iter().map(String::as_str).chain(["--version"]).collect();
        let (code, stdout, _) = edgeward(&args);
        assert_eq!((code, stdout.trim()), (0, format!("edgeward {}", env!("CARGO_PKG_VERSION")).as_str()), "{name} --version");
        let help = edgeward(&path.iter().map(String::as_str).chain(["--help"]).collect::<Vec<_>>()).1;
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        seen.push(path.join(" "));
    }
    seen.sort();
    let expected = [
        "",
        "audit",
        "keys",
        "keys check",
        "keys create",
        "keys delete",
        "keys disable",
        "keys get",
        "keys list",
        "keys rotate",
        "path",
        "revocations",
        "revocations import",
        "revocations list",
        "revocations remove",
        "revoke",
        "revoke api-key",
        "revoke jti",
        "revoke kid",
        "revoke sub",
        "usage",
        "verify",
    ];
    assert_eq!(seen, expected);
    let (code, stdout, _) = edgeward(&["help", "keys", "create"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: edgeward keys create"), "{stdout}");
}

#[test]
fn clap_errors_are_usage_errors_exit_2() {
    let admin = ["--url", "http://127.0.0.1:9", "--admin-token-file", "/nonexistent"];
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["bogus"],
        vec!["verify", "--bogus"],
        vec!["verify", "--config", "c.json"],
        vec!["path", "--bogus", "/x"],
        vec!["path"],
        vec!["keys"],
        vec!["keys", "bogus"],
        vec!["keys", "check"],
        [&["keys", "list", "--bogus"][..], &admin].concat(),
        [&["keys", "list", "--limit", "many"][..], &admin].concat(),
        [&["keys", "get", "not-a-key-id"][..], &admin].concat(),
        [&["keys", "create", "--owner", "o", "--expires-in", "60", "--expires-at", "1"][..], &admin].concat(),
        vec!["keys", "create", "--owner", "o", "--url", "ftp://x", "--admin-token-file", "f"],
        vec!["revoke", "jti", "--iss", "https://i"],
        [&["revoke", "kid", "--kid", "k", "--expires-in", "0"][..], &admin].concat(),
        [&["revocations", "remove", "not-hex"][..], &admin].concat(),
        [&["audit", "--limit", "0"][..], &admin].concat(),
        [&["usage"][..], &admin].concat(),
        [&["usage", "--sub", "alice"][..], &admin].concat(),
        [&["usage", "--key-id", "k", "--client-id", "c"][..], &admin].concat(),
        [&["usage", "--key-id", "k", "--granularity", "week"][..], &admin].concat(),
        [&["usage", "--key-id", "k", "--from", "yesterday"][..], &admin].concat(),
        [&["audit", "--limit", "1001"][..], &admin].concat(),
        [&["audit", "--since", "yesterday"][..], &admin].concat(),
        vec!["audit", "--verify"],
        [&["audit", "--anchor", "3:abc"][..], &admin].concat(),
        [&["audit", "--verify", "--anchor", "x:0000000000000000000000000000000000000000000000000000000000000000"][..], &admin].concat(),
    ];
    for args in cases {
        let (code, stdout, stderr) = edgeward(&args);
        assert_eq!(code, 2, "edgeward {args:?}: {stdout} {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("edgeward {args:?}: not one JSON line ({e}): {stdout:?}"));
        assert_eq!((v["verdict"].as_str(), v["reason"].as_str()), (Some("error"), Some("usage")), "edgeward {args:?}: {v}");
        assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "edgeward {args:?}: {v}");
        assert!(stderr.starts_with("error: ") && stderr.contains("--help"), "edgeward {args:?}: no message on stderr: {stderr}");
    }
}

#[test]
fn explain_lists_the_steps_taken() {
    let f = Fixture::new("explain");
    let now = NOW.to_string();
    let step = |s: &serde_json::Value| (s["step"].as_str().unwrap().to_owned(), s["result"].as_str().unwrap().to_owned());

    let valid = f.token("api://cli", NOW - 10, NOW + 600);
    let (code, v) = f.run(&valid, &["--now", &now, "--explain"]);
    assert_eq!(code, 0, "{v}");
    let steps = v["steps"].as_array().unwrap_or_else(|| panic!("no steps: {v}"));
    assert!(steps.iter().all(|s| s["result"] == "pass" && s["detail"].is_string()), "{v}");
    let names: Vec<_> = steps.iter().map(|s| step(s).0).collect();
    for name in ["parse", "issuer", "key", "signature", "claims"] {
        assert!(names.iter().any(|n| n == name), "no {name} step: {names:?}");
    }
    assert!(!v.to_string().contains(&valid), "the token itself is never printed");

    let expired = f.token("api://cli", NOW - 7200, NOW - 3600);
    let (code, v) = f.run(&expired, &["--now", &now, "--explain"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("expired")), "{v}");
    let steps = v["steps"].as_array().unwrap();
    let failed: Vec<_> = steps.iter().filter(|s| s["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "exactly one failing step: {v}");
    assert_eq!(step(failed[0]).0, "claims");
    assert!(failed[0]["detail"].as_str().unwrap().ends_with("(expired)"), "{v}");
    assert_eq!(steps.last(), Some(failed[0]), "the failing step is the last one taken");
    assert!(steps.iter().all(|s| s["result"] == "pass" || s["result"] == "fail"));

    // Without --explain: the same verdict, and no steps.
    for token in [&valid, &expired] {
        let (_, mut with) = f.run(token, &["--now", &now, "--explain"]);
        let (_, without) = f.run(token, &["--now", &now]);
        assert!(without.get("steps").is_none(), "{without}");
        with.as_object_mut().unwrap().remove("steps");
        assert_eq!(with, without);
    }
}

/// A DPoP proof (EdDSA, by the Ed25519 key of `seed`) for `method` and `htu`, bound to `token`.
fn dpop_proof(seed: u8, method: &str, htu: &str, token: &str, iat: u64) -> (String, String) {
    use sha2::Digest;
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    let b64 = |b: &[u8]| Base64UrlSafeNoPadding::encode_to_string(b).unwrap();
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&kp.pk[..])});
    let jkt = edgeward::core::jwk::thumbprint(&edgeward::core::jwk::parse_public_jwk(&jwk).unwrap());
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
    let claims =
        serde_json::json!({"htm": method, "htu": htu, "iat": iat, "jti": format!("cli-{seed}-{iat}"), "ath": b64(&sha2::Sha256::digest(token.as_bytes()))});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = kp.sk.sign(input.as_bytes(), None);
    (format!("{input}.{}", b64(&sig[..])), jkt)
}

#[test]
fn verify_checks_a_dpop_proof_as_the_gate_does() {
    let f = Fixture::new("dpop");
    let (_, jkt) = dpop_proof(9, "GET", "https://api.test/orders", "", NOW);
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Cnf {
        cnf: serde_json::Value,
    }
    let token = f
        .key
        .sign(
            Claims::with_custom_claims(Cnf { cnf: serde_json::json!({"jkt": jkt}) }, Duration::from_secs(1))
                .with_issuer("https://issuer.test")
                .with_audience("api://cli")
                .with_subject("alice")
                .tap_times(NOW),
        )
        .unwrap();
    let now = NOW.to_string();
    // Without its proof, a bound token is what the gate refuses as a bearer token.
    let (code, v) = f.run(&token, &["--now", &now]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("dpop_bound_token_as_bearer")));
    let (proof, _) = dpop_proof(9, "GET", "https://api.test/orders", &token, NOW);
    let pf = f.dir.join("proof.txt");
    std::fs::write(&pf, &proof).unwrap();
    let pf = pf.to_str().unwrap();
    let (code, v) = f.run(&token, &["--now", &now, "--dpop-proof", pf, "--method", "get", "--url", "https://api.test/orders?x=1"]);
    assert_eq!((code, v["verdict"].as_str(), v["dpop"]["jkt"].as_str()), (0, Some("accept"), Some(jkt.as_str())), "{v}");
    let (code, v) = f.run(&token, &["--now", &now, "--dpop-proof", pf, "--method", "POST", "--url", "https://api.test/orders"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("dpop_htm")));
    let (code, v) = f.run(&token, &["--now", &now, "--dpop-proof", pf, "--method", "GET", "--url", "https://api.test/other"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("dpop_htu")));
    // A proof by another key.
    let (other, _) = dpop_proof(10, "GET", "https://api.test/orders", &token, NOW);
    std::fs::write(f.dir.join("other.txt"), &other).unwrap();
    let (code, v) =
        f.run(&token, &["--now", &now, "--dpop-proof", f.dir.join("other.txt").to_str().unwrap(), "--method", "GET", "--url", "https://api.test/orders"]);
    assert_eq!((code, v["reason"].as_str()), (1, Some("dpop_key_mismatch")));
    // --dpop-proof needs --method and --url.
    let (code, _, _) = edgeward(&["verify", "--config", "c.json", "--token-file", "t", "--dpop-proof", pf]);
    assert_eq!(code, 2);
}

trait TapTimes {
    fn tap_times(self, now: u64) -> Self;
}

impl<T> TapTimes for JWTClaims<T> {
    fn tap_times(mut self, now: u64) -> Self {
        self.issued_at = Some(Duration::from_secs(now - 10));
        self.expires_at = Some(Duration::from_secs(now + 600));
        self.invalid_before = None;
        self
    }
}
