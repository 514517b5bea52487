//! `edgeward`: the operator CLI, on the same core as the Worker.
//!
//! ```text
//! edgeward verify --config FILE --token-file FILE [--now UNIX_SECONDS]
//! edgeward revoke jti --iss ISS --jti JTI          ADMIN [--reason TEXT] [--expires-in SECS]
//! edgeward revoke sub --iss ISS --sub SUB [--before UNIX] ADMIN [...]
//! edgeward revoke kid --kid KID                    ADMIN [...]
//! edgeward revoke api-key --key-id ID              ADMIN [...]
//! edgeward revocations list [--limit N]            ADMIN
//! edgeward revocations remove ID                   ADMIN
//! edgeward keys create --owner OWNER [--scope S]... [--tier T] [--allow-ip CIDR]...
//!                      [--expires-in SECS | --expires-at UNIX] [--not-before UNIX] [--description TEXT] ADMIN
//! edgeward keys list [--limit N]                   ADMIN
//! edgeward keys get|disable|delete KEY_ID          ADMIN
//! edgeward keys rotate KEY_ID [--overlap SECS]     ADMIN
//! edgeward keys check KEY|-                        (offline: format and checksum; - reads stdin)
//! edgeward path [--config FILE] [--method M] PATH|- (offline: the canonical request; - reads
//!                                                    one path per line from stdin)
//!   where ADMIN is --url GATEWAY_URL --admin-token-file FILE (the admin token, or an admin JWT)
//! ```
//! `verify` prints one JSON object: `{"verdict": "accept"|"reject", "reason": CODE, ...}`; exit
//! status 0 accept, 1 reject, 2 usage or configuration error. Only inline `jwks` keys are used (no
//! network): an issuer with only a `jwks_uri` yields `jwks_unavailable`.
//!
//! `revoke` and `revocations` talk to the gateway's admin API and print its JSON answer (`list`:
//! one JSON object per revocation per line, all pages); exit status 0 done, 1 refused by the API
//! (4xx), 2 usage error, 3 gateway unreachable or failing (5xx). `keys` likewise (`create` and
//! `rotate` print the new key once, in the `key` member). `keys check` prints
//! `{"valid": bool, ...}` and exits 0 valid, 1 invalid.
//!
//! `path` shows what the gate decides on and forwards for a path as the gate receives it (with
//! the configuration's `request` section and routes, or the defaults; in a Worker the runtime's
//! URL parser has already resolved `.`/`..` segments, `%2e` ones included): one JSON line per path,
//! `{"path", "canonical", "method", "rule", "requirement"}` or `{"path", "refused": CODE, "status",
//! "problem"}`; exit 0 if every path is accepted, 1 if any is refused, 2 on a usage or
//! configuration error.

use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::log::fingerprint;
use edgeward::core::pipeline::Gate;
use serde_json::json;
use std::process::ExitCode;

const USAGE: &str = "usage: edgeward verify --config FILE --token-file FILE [--now UNIX_SECONDS]
       edgeward revoke (jti --iss ISS --jti JTI | sub --iss ISS --sub SUB [--before UNIX] | kid --kid KID | api-key --key-id ID)
                       --url GATEWAY_URL --admin-token-file FILE [--reason TEXT] [--expires-in SECS]
       edgeward revocations (list [--limit N] | remove ID) --url GATEWAY_URL --admin-token-file FILE
       edgeward keys (create --owner OWNER [--scope S]... [--tier T] [--allow-ip CIDR]... [--expires-in SECS | --expires-at UNIX]
                       [--not-before UNIX] [--description TEXT] | list [--limit N] | get ID | rotate ID [--overlap SECS]
                       | disable ID | delete ID) --url GATEWAY_URL --admin-token-file FILE
       edgeward keys check KEY|-
       edgeward path [--config FILE] [--method M] PATH|-";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(("admin", message, _)) => {
            eprintln!("edgeward: {message}");
            ExitCode::from(3)
        }
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
        "revoke" => admin::revoke(rest),
        "revocations" => admin::revocations(rest),
        "keys" if rest.first().map(String::as_str) == Some("check") => keys_check(&rest[1..]),
        "keys" => admin::keys(rest),
        "path" => path(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

/// The CLI is an adapter: the one place it reads the clock.
#[allow(clippy::disallowed_methods)]
fn now_secs() -> Result<i64, Failure> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).map_err(|_| usage("system clock is before 1970"))
}

/// `revoke` and `revocations`: the admin API over HTTP(S).
mod admin {
    use super::{now_secs, usage, Failure};
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::process::ExitCode;

    const PREFIX: &str = "/__edgeward/admin";

    struct Args {
        positional: Vec<String>,
        /// Last value of each flag.
        flags: HashMap<String, String>,
        /// Every value of each flag, in order (repeatable flags).
        all: HashMap<String, Vec<String>>,
    }

    fn parse(args: &[String], known: &[&str]) -> Result<Args, Failure> {
        let mut out = Args { positional: Vec::new(), flags: HashMap::new(), all: HashMap::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.strip_prefix("--") {
                Some(name) if known.contains(&name) => {
                    let v = it.next().ok_or_else(|| usage(format!("--{name} needs a value")))?;
                    out.flags.insert(name.to_string(), v.clone());
                    out.all.entry(name.to_string()).or_default().push(v.clone());
                }
                Some(name) => return Err(usage(format!("unknown flag --{name}"))),
                None => out.positional.push(a.clone()),
            }
        }
        Ok(out)
    }

    struct Admin {
        base: String,
        token: String,
    }

    impl Admin {
        fn from(a: &Args) -> Result<Admin, Failure> {
            let url = a.flags.get("url").ok_or_else(|| usage("--url is required"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(usage("--url must be an http(s) URL"));
            }
            let file = a.flags.get("admin-token-file").ok_or_else(|| usage("--admin-token-file is required"))?;
            let token = std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {file}: {e}")))?.trim().to_string();
            if token.is_empty() {
                return Err(usage(format!("{file} is empty")));
            }
            let prefix = a.flags.get("admin-prefix").map_or(PREFIX, String::as_str);
            Ok(Admin { base: format!("{}{prefix}", url.trim_end_matches('/')), token })
        }

        /// Sends one call; returns (status, JSON body).
        fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), Failure> {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let url = format!("{}{path}", self.base);
            let auth = format!("Bearer {}", self.token);
            let resp = match (method, body) {
                ("POST", Some(b)) => agent.post(&url).header("authorization", &auth).header("content-type", "application/json").send(b.to_string()),
                ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
                _ => agent.get(&url).header("authorization", &auth).call(),
            };
            let mut resp = resp.map_err(|e| ("admin", format!("cannot reach {url}: {e}"), None))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
            Ok((status, v))
        }
    }

    fn finish(status: u16, v: &Value) -> Result<ExitCode, Failure> {
        println!("{v}");
        match status {
            200..=299 => Ok(ExitCode::SUCCESS),
            400..=499 => Ok(ExitCode::from(1)),
            _ => Err(("admin", format!("gateway answered {status}"), None)),
        }
    }

    /// Prints every item of a paged admin listing (`items`, `next_cursor`), one JSON per line.
    fn list_all(admin: &Admin, resource: &str, limit: usize) -> Result<ExitCode, Failure> {
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{resource}?limit={limit}&cursor={c}"),
                None => format!("{resource}?limit={limit}"),
            };
            let (status, v) = admin.call("GET", &path, None)?;
            if status != 200 {
                return finish(status, &v);
            }
            for item in v["items"].as_array().into_iter().flatten() {
                println!("{item}");
            }
            match v["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(ExitCode::SUCCESS),
            }
        }
    }

    pub fn revoke(args: &[String]) -> Result<ExitCode, Failure> {
        let a = parse(args, &["url", "admin-token-file", "admin-prefix", "iss", "jti", "sub", "before", "kid", "key-id", "reason", "expires-in"])?;
        let admin = Admin::from(&a)?;
        let now = now_secs()?;
        let get = |f: &str| a.flags.get(f).cloned().ok_or_else(|| usage(format!("--{f} is required")));
        let kind = a.positional.first().map(String::as_str).ok_or_else(|| usage("revoke what? jti, sub, kid or api-key"))?;
        let target = match kind {
            "jti" => json!({"kind": "jti", "iss": get("iss")?, "jti": get("jti")?}),
            "sub" => {
                let before = match a.flags.get("before") {
                    Some(b) => b.parse::<i64>().map_err(|_| usage("--before takes Unix seconds"))?,
                    None => now,
                };
                json!({"kind": "subject_before", "iss": get("iss")?, "sub": get("sub")?, "before": before})
            }
            "kid" => json!({"kind": "kid", "kid": get("kid")?}),
            "api-key" => json!({"kind": "api_key", "key_id": get("key-id")?}),
            other => return Err(usage(format!("cannot revoke {other:?}: jti, sub, kid or api-key"))),
        };
        // A jti entry only needs to outlive the token (default maximum lifetime: a day).
        let default_ttl = if kind == "jti" { 86_400 + 60 } else { 30 * 86_400 };
        let ttl = match a.flags.get("expires-in") {
            Some(s) => s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| usage("--expires-in takes positive seconds"))?,
            None => default_ttl,
        };
        let body = json!({"target": target, "reason": a.flags.get("reason").cloned().unwrap_or_default(), "expires_at": now + ttl});
        let (status, v) = admin.call("POST", "/revocations", Some(&body))?;
        finish(status, &v)
    }

    pub fn revocations(args: &[String]) -> Result<ExitCode, Failure> {
        let a = parse(args, &["url", "admin-token-file", "admin-prefix", "limit"])?;
        let admin = Admin::from(&a)?;
        match a.positional.first().map(String::as_str) {
            Some("list") => {
                let limit = a.flags.get("limit").map_or(Ok(1000), |l| l.parse::<usize>().map_err(|_| usage("--limit takes a number")))?;
                list_all(&admin, "/revocations", limit)
            }
            Some("remove") => {
                let id = a.positional.get(1).ok_or_else(|| usage("remove which id?"))?;
                if !id.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(usage("a revocation id is hexadecimal"));
                }
                let (status, v) = admin.call("DELETE", &format!("/revocations/{id}"), None)?;
                finish(status, &v)
            }
            _ => Err(usage("revocations list | revocations remove ID")),
        }
    }

    fn unix(a: &Args, flag: &str) -> Result<Option<i64>, Failure> {
        a.flags.get(flag).map(|v| v.parse::<i64>().map_err(|_| usage(format!("--{flag} takes Unix seconds")))).transpose()
    }

    pub fn keys(args: &[String]) -> Result<ExitCode, Failure> {
        let a = parse(
            args,
            &[
                "url",
                "admin-token-file",
                "admin-prefix",
                "owner",
                "scope",
                "tier",
                "allow-ip",
                "expires-in",
                "expires-at",
                "not-before",
                "description",
                "limit",
                "overlap",
            ],
        )?;
        let admin = Admin::from(&a)?;
        let id = || {
            let id = a.positional.get(1).ok_or_else(|| usage("which key id?"))?;
            if !edgeward::core::apikey::is_key_id(id) {
                return Err(usage(format!("{id:?} is not a key id (key_ and 24 hex digits)")));
            }
            Ok(id.clone())
        };
        let (status, v) = match a.positional.first().map(String::as_str) {
            Some("create") => {
                let owner = a.flags.get("owner").ok_or_else(|| usage("--owner is required"))?;
                let expires_at = match (unix(&a, "expires-at")?, a.flags.get("expires-in")) {
                    (Some(_), Some(_)) => return Err(usage("--expires-at or --expires-in, not both")),
                    (Some(t), None) => Some(t),
                    (None, Some(s)) => {
                        Some(now_secs()? + s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| usage("--expires-in takes positive seconds"))?)
                    }
                    (None, None) => None,
                };
                let body = json!({
                    "owner": owner,
                    "description": a.flags.get("description").cloned().unwrap_or_default(),
                    "scopes": a.all.get("scope").cloned().unwrap_or_default(),
                    "tier": a.flags.get("tier"),
                    "allowed_ips": a.all.get("allow-ip").cloned().unwrap_or_default(),
                    "not_before": unix(&a, "not-before")?,
                    "expires_at": expires_at,
                });
                admin.call("POST", "/keys", Some(&body))?
            }
            Some("list") => {
                let limit = a.flags.get("limit").map_or(Ok(100), |l| l.parse::<usize>().map_err(|_| usage("--limit takes a number")))?;
                return list_all(&admin, "/keys", limit);
            }
            Some("get") => admin.call("GET", &format!("/keys/{}", id()?), None)?,
            Some("delete") => admin.call("DELETE", &format!("/keys/{}", id()?), None)?,
            Some("disable") => admin.call("POST", &format!("/keys/{}/disable", id()?), Some(&json!({})))?,
            Some("rotate") => {
                let mut body = json!({});
                if let Some(o) = a.flags.get("overlap") {
                    body["overlap_secs"] = json!(o.parse::<i64>().map_err(|_| usage("--overlap takes seconds"))?);
                }
                admin.call("POST", &format!("/keys/{}/rotate", id()?), Some(&body))?
            }
            _ => return Err(usage("keys create | list | get ID | rotate ID | disable ID | delete ID | check KEY")),
        };
        finish(status, &v)
    }
}

/// `keys check KEY|-`: format and checksum, offline.
fn keys_check(args: &[String]) -> Result<ExitCode, Failure> {
    use edgeward::core::apikey::PresentedKey;
    let [arg] = args else { return Err(usage("keys check KEY (or - to read it from stdin)")) };
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        s.trim().to_string()
    } else {
        arg.trim().to_string()
    };
    let fp = fingerprint(text.as_bytes());
    match PresentedKey::parse(&text, None) {
        Ok(k) => {
            println!("{}", json!({"valid": true, "env": k.env(), "key_fp": fp}));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let reason = match e {
                edgeward::core::error::FormatError::Prefix => "prefix",
                edgeward::core::error::FormatError::Shape => "shape",
                edgeward::core::error::FormatError::Checksum => "checksum",
                edgeward::core::error::FormatError::Environment => "environment",
            };
            println!("{}", json!({"valid": false, "reason": reason, "message": e.to_string(), "key_fp": fp}));
            Ok(ExitCode::from(1))
        }
    }
}

fn path(args: &[String]) -> Result<ExitCode, Failure> {
    use edgeward::core::access::Requirement;
    use edgeward::core::canonical::{canonicalize, PathRules, RequestPolicy};
    let (mut config, mut method, mut target) = (None, "GET".to_string(), None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| usage(format!("{flag} needs a value")));
        match flag.as_str() {
            "--config" => config = Some(value()?),
            "--method" => method = value()?,
            f if f.starts_with("--") => return Err(usage(format!("unknown flag {f}"))),
            _ if target.is_some() => return Err(usage("path takes one PATH (or - for stdin)")),
            _ => target = Some(flag.clone()),
        }
    }
    let Some(target) = target else { return Err(usage("path PATH (or - to read paths from stdin)")) };
    let policy = match config {
        Some(f) => {
            let text = std::fs::read_to_string(&f).map_err(|e| usage(format!("cannot read {f}: {e}")))?;
            Some(Policy::from_json(&text).map_err(|e| ("config_invalid", e.to_string(), Some(e.field.clone())))?)
        }
        None => None,
    };
    let (request, rules) = match &policy {
        Some(p) => (p.request.clone(), p.path_rules),
        None => (RequestPolicy::default(), PathRules::default()),
    };
    let paths: Vec<String> = if target == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        s.lines().map(str::to_owned).collect()
    } else {
        vec![target]
    };
    let mut refused = false;
    for raw in &paths {
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        let decided = match &policy {
            Some(p) => p.canonical_request(&method, path, query, &[]),
            None => canonicalize(&method, path, query, &[], &request, &rules),
        };
        let line = match decided {
            Ok(c) => {
                let mut out = json!({"path": raw, "canonical": c.path, "method": c.method});
                if let Some(p) = &policy {
                    out["rule"] = json!(p.routes.rules().iter().position(|r| Some(r) == p.routes.rule(&c.method, &c.path)));
                    out["requirement"] = match p.routes.requirement(&c.method, &c.path) {
                        Requirement::Public => json!("public"),
                        Requirement::Token { scopes } => json!({"scopes": scopes}),
                    };
                }
                out
            }
            Err(e) => {
                refused = true;
                let r = e.rejection("edgeward");
                json!({"path": raw, "refused": r.code, "status": r.status, "problem": e.to_string()})
            }
        };
        println!("{line}");
    }
    Ok(if refused { ExitCode::from(1) } else { ExitCode::SUCCESS })
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
        None => now_secs().map_err(|_| usage("system clock is before 1970; pass --now"))?,
    };
    let fp = fingerprint(token.as_bytes());
    let realm = policy.realm.clone();
    match Gate::new(policy).verify_inline(token, NativeBackend, now, false).0 {
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
            let r = e.rejection(&realm);
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
