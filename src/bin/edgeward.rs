//! `edgeward`: the operator CLI, on the same core as the Worker.
//!
//! ```text
//! edgeward verify --config FILE --token-file FILE [--now UNIX_SECONDS]
//! ```
//! Prints one JSON object: `{"verdict": "accept"|"reject", "reason": CODE, ...}`.
//! Exit status: 0 accept, 1 reject, 2 usage or configuration error. Only inline `jwks` keys are
//! used (no network): an issuer with only a `jwks_uri` yields `jwks_unavailable`.

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::gate::{self, InlineOnly};
use edgeward::core::log::fingerprint;
use serde_json::json;
use std::process::ExitCode;

const USAGE: &str = "usage: edgeward verify --config FILE --token-file FILE [--now UNIX_SECONDS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err((reason, message, field)) => {
            let mut out = json!({"verdict": "error", "reason": reason, "message": message});
            if let Some(f) = field {
                out["field"] = json!(f);
            }
            println!("{out}");
            eprintln!("edgeward: {message}");
            if reason == "usage" {
                eprintln!("{USAGE}");
            }
            ExitCode::from(2)
        }
    }
}

type Failure = (&'static str, String, Option<String>);

fn usage(msg: impl Into<String>) -> Failure {
    ("usage", msg.into(), None)
}

fn run(args: &[String]) -> Result<ExitCode, Failure> {
    let Some((cmd, rest)) = args.split_first() else { return Err(usage("no command")) };
    match cmd.as_str() {
        "verify" => verify(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn verify(args: &[String]) -> Result<ExitCode, Failure> {
    let (mut config, mut token_file, mut now) = (None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| usage(format!("{flag} needs a value")));
        match flag.as_str() {
            "--config" => config = Some(value()?),
            "--token-file" => token_file = Some(value()?),
            "--now" => {
                let v = value()?;
                now = Some(v.parse::<i64>().map_err(|_| usage(format!("--now takes Unix seconds, not {v:?}")))?);
            }
            other => return Err(usage(format!("unknown flag {other:?}"))),
        }
    }
    let config = config.ok_or_else(|| usage("--config is required"))?;
    let token_file = token_file.ok_or_else(|| usage("--token-file is required"))?;
    let text = std::fs::read_to_string(&config).map_err(|e| ("config_invalid", format!("cannot read {config}: {e}"), None))?;
    let policy = Policy::from_json(&text).map_err(|e| ("config_invalid", e.to_string(), Some(e.field.clone())))?;
    let token = std::fs::read_to_string(&token_file).map_err(|e| usage(format!("cannot read {token_file}: {e}")))?;
    let token = token.trim();
    let now = match now {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .map_err(|_| usage("system clock is before 1970; pass --now"))?,
    };
    let fp = fingerprint(token.as_bytes());
    match gate::verify(&policy, token, &InlineOnly, &NativeBackend, now) {
        Ok(v) => {
            let out = json!({
                "verdict": "accept",
                "reason": null,
                "token_fp": fp,
                "now": now,
                "alg": v.alg().name(),
                "kid": v.kid(),
                "claims": v.claims(),
            });
            println!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let r = e.rejection(&policy.realm);
            let out = json!({
                "verdict": "reject",
                "reason": r.code,
                "status": r.status,
                "message": r.message,
                "detail": e.to_string(),
                "token_fp": fp,
                "now": now,
            });
            println!("{out}");
            Ok(ExitCode::from(1))
        }
    }
}
