//! `edgeward`: the operator CLI, on the same core as the Worker.
//!
//! ```text
//! edgeward verify --config FILE --token-file FILE [--now UNIX_SECONDS] [--explain]
//! edgeward revoke jti --iss ISS --jti JTI [--token-exp UNIX] ADMIN [--reason TEXT] [--expires-in SECS]
//! edgeward revoke sub --iss ISS --sub SUB [--before UNIX] ADMIN [...]
//! edgeward revoke kid --kid KID                    ADMIN [...]
//! edgeward revoke api-key --key-id ID              ADMIN [...]
//! edgeward revocations list [--limit N]            ADMIN
//! edgeward revocations remove ID                   ADMIN
//! edgeward revocations import FILE|-               ADMIN   (JSON lines, sent 1,000 per call)
//! edgeward keys create --owner OWNER [--scope S]... [--tier T] [--allow-ip CIDR]...
//!                      [--expires-in SECS | --expires-at UNIX] [--not-before UNIX] [--description TEXT] ADMIN
//! edgeward keys list [--limit N]                   ADMIN
//! edgeward keys get|disable|delete KEY_ID          ADMIN
//! edgeward keys rotate KEY_ID [--overlap SECS]     ADMIN
//! edgeward keys check KEY|-                        (offline: format and checksum; - reads stdin)
//! edgeward audit [--since UNIX] [--verify [--anchor SEQ:HASH]...] [--limit N] ADMIN
//! edgeward usage (--key-id ID | --sub SUB --iss ISS | --client-id ID) [--from UNIX] [--to UNIX]
//!                [--granularity minute|hour|day] ADMIN
//! edgeward path [--config FILE] [--method M] PATH|- (offline: the canonical request; - reads
//!                                                    one path per line from stdin)
//!   where ADMIN is --url GATEWAY_URL --admin-token-file FILE (the admin token, or an admin JWT)
//! ```
//! Every command and subcommand takes `--help` and `--version` (printed on stdout, exit 0). A
//! usage error (an unknown flag or subcommand, a missing or malformed value) prints one JSON line
//! `{"verdict": "error", "reason": "usage", "message"}` on stdout and the message with the
//! command's usage on stderr, and exits 2, whatever the command.
//!
//! `verify` prints one JSON object: `{"verdict": "accept"|"reject", "reason": CODE, ...}`; exit
//! status 0 accept, 1 reject, 2 usage or configuration error. Only inline `jwks` keys are used (no
//! network): an issuer with only a `jwks_uri` yields `jwks_unavailable`. With `--explain` the
//! object also has `"steps"`: `{"step", "result": "pass"|"fail", "detail"}` for each step the
//! pipeline took, up to the first failure.
//!
//! `revoke` and `revocations` talk to the gateway's admin API and print its JSON answer (`list`:
//! one JSON object per revocation per line, all pages); exit status 0 done, 1 refused by the API
//! (4xx), 2 usage error (or, for `revocations import`, a line that is not a JSON object: nothing
//! is sent), 3 gateway unreachable or failing (5xx). `keys` likewise (`create` and
//! `rotate` print the new key once, in the `key` member). `keys check` prints
//! `{"valid": bool, ...}` and exits 0 valid, 1 invalid.
//!
//! `audit` prints the admin audit trail, one JSON entry per line, every page (from the first
//! entry at or after `--since`); with `--verify` it reads every page instead, recomputes the hash
//! chain (`edgeward::core::audit`) and prints one line, `{"verified": true, "entries", "first_seq",
//! "head"}` or `{"verified": false, "problem", "seq", "message"}` (with `--anchor SEQ:HASH`, a head
//! printed earlier must still be in the chain): exit status 0 intact, 1 a gap, an altered or
//! malformed entry, a missing anchor, or a refusal by the API, 2 usage error, 3 gateway
//! unreachable or failing.
//!
//! `usage` prints a subject's usage series (`GET {admin}/usage`), one JSON point per line,
//! `{"t", "accepted", "rejected": {"reason": N}}`; exit status 0 done, 1 refused by the API (4xx:
//! a bad parameter), 2 usage error, 3 gateway unreachable or failing.
//!
//! `path` shows what the gate decides on and forwards for a path as the gate receives it (with
//! the configuration's `request` section and routes, or the defaults; in a Worker the runtime's
//! URL parser has already resolved `.`/`..` segments, `%2e` ones included): one JSON line per path,
//! `{"path", "canonical", "method", "rule", "requirement"}` or `{"path", "refused": CODE, "status",
//! "problem"}`; exit 0 if every path is accepted, 1 if any is refused, 2 on a usage or
//! configuration error.

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use edgeward::core::config::Policy;
use edgeward::core::crypto::NativeBackend;
use edgeward::core::log::fingerprint;
use edgeward::core::pipeline::Gate;
use serde_json::json;
use std::process::ExitCode;

/// Edgeward's operator CLI: verify tokens and canonical paths offline, manage revocations and API
/// keys and read the audit trail through a gateway's admin API.
#[derive(Parser)]
#[command(name = "edgeward", version, propagate_version = true, args_override_self = true)]
#[command(after_help = "Output is JSON lines on stdout. A usage error prints {\"verdict\": \"error\", \"reason\": \"usage\", ...} and exits 2.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a JWT offline against a configuration's inline jwks keys (no network).
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Revoke tokens or an API key through the gateway's admin API.
    #[command(subcommand)]
    Revoke(RevokeTarget),
    /// List or remove revocations through the gateway's admin API.
    #[command(subcommand)]
    Revocations(Revocations),
    /// Manage API keys through the gateway's admin API (check works offline).
    #[command(subcommand)]
    Keys(Keys),
    /// Show the canonical request the gate decides on for a path, and its route (offline).
    #[command(after_help = PATH_HELP)]
    Path(PathArgs),
    /// Print the admin audit trail, or verify its hash chain, through the gateway's admin API.
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
    /// Print a key's, subject's or client's usage series through the gateway's admin API.
    #[command(after_help = USAGE_HELP)]
    Usage(UsageArgs),
}

const VERIFY_HELP: &str =
    "Prints one JSON line: {\"verdict\": \"accept\"|\"reject\", \"reason\": CODE, \"token_fp\", \"now\", ...}; the token itself is never printed.
An issuer with only a jwks_uri yields jwks_unavailable.
Exit status: 0 accept, 1 reject, 2 usage or configuration error.";
const ADMIN_HELP: &str = "Prints the admin API's JSON answer on one line.
Exit status: 0 done, 1 refused by the API (4xx), 2 usage error, 3 gateway unreachable or failing (5xx).";
const LIST_HELP: &str = "Prints one JSON line per item, following every page.
Exit status: 0 done, 1 refused by the API (4xx), 2 usage error, 3 gateway unreachable or failing (5xx).";
const NEW_KEY_HELP: &str = "Prints the admin API's JSON answer on one line, with the new key in \"key\" (shown this once).
Exit status: 0 done, 1 refused by the API (4xx), 2 usage error, 3 gateway unreachable or failing (5xx).";
const CHECK_HELP: &str = "Prints one JSON line: {\"valid\": true, \"env\", \"key_fp\"} or {\"valid\": false, \"reason\": prefix|shape|checksum|environment, \"message\", \"key_fp\"}.
Exit status: 0 valid, 1 invalid, 2 usage error.";
const AUDIT_HELP: &str = "Prints one JSON line per entry, following every page. With --verify, prints one line instead:
{\"verified\": true, \"entries\", \"first_seq\", \"head\": {\"seq\", \"hash\"}} or {\"verified\": false, \"problem\": gap|altered|unlinked|malformed|..., \"seq\", \"message\"}.
Exit status: 0 done (with --verify: the chain is intact), 1 a broken chain (--verify) or refused by the API (4xx), 2 usage error, 3 gateway unreachable or failing (5xx).";
const USAGE_HELP: &str = "Prints one JSON line per interval with any traffic: {\"t\": UNIX, \"accepted\": N, \"rejected\": {\"reason\": N}}.
Minute resolution is kept for a day, hourly after (observability.retention_days in all).
Exit status: 0 done, 1 refused by the API (4xx: a bad parameter), 2 usage error, 3 gateway unreachable or failing (5xx).";
const PATH_HELP: &str = "Prints one JSON line per path: {\"path\", \"canonical\", \"method\", \"rule\", \"requirement\"} (rule and requirement with --config)
or {\"path\", \"refused\": CODE, \"status\", \"problem\"}. In a Worker the runtime has already resolved . and .. segments (%2e ones too).
Exit status: 0 every path accepted, 1 any refused, 2 usage or configuration error.";

#[derive(Args)]
struct VerifyArgs {
    /// Gateway configuration (JSON); only its issuers' inline jwks keys are used
    #[arg(long, value_name = "FILE")]
    config: String,
    /// File holding the token (surrounding whitespace ignored)
    #[arg(long, value_name = "FILE")]
    token_file: String,
    /// Verify as of this time, in Unix seconds [default: the system clock]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    now: Option<i64>,
    /// Add "steps" to the verdict: each verification step taken, {"step", "result": "pass"|"fail", "detail"}
    #[arg(long)]
    explain: bool,
    /// File holding a DPoP proof for the token (RFC 9449): checked as the gate checks it, for --method and --url
    #[arg(long, value_name = "FILE", requires_all = ["method", "url"])]
    dpop_proof: Option<String>,
    /// The request method the DPoP proof is for
    #[arg(long, value_name = "METHOD", requires = "dpop_proof")]
    method: Option<String>,
    /// The request URL the DPoP proof is for (absolute)
    #[arg(long, value_name = "URL", requires = "dpop_proof")]
    url: Option<String>,
}

/// How to reach the admin API: every command but verify, path and keys check needs it.
#[derive(Args)]
struct Admin {
    /// The gateway's base URL (http:// or https://; HTTPS checks the system's web PKI roots)
    #[arg(long, value_name = "GATEWAY_URL", value_parser = http_url)]
    url: String,
    /// File holding the admin token, or an admin JWT (surrounding whitespace ignored)
    #[arg(long, value_name = "FILE")]
    admin_token_file: String,
    /// Path prefix of the admin API, as in the configuration's admin.path_prefix
    #[arg(long, value_name = "PATH", default_value = admin::PREFIX)]
    admin_prefix: String,
}

/// What every revocation takes besides its target.
#[derive(Args)]
struct RevokeArgs {
    /// Free-text reason stored with the revocation [default: empty]
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Lifetime of the revocation, in seconds [default: for jti and sub, until no matching token can still verify (the gateway works it out from its configuration); 2592000 (30 days) for kid and api-key]
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    expires_in: Option<i64>,
    #[command(flatten)]
    admin: Admin,
}

#[derive(Subcommand)]
enum RevokeTarget {
    /// Revoke one token: its issuer and jti claim
    #[command(after_help = ADMIN_HELP)]
    Jti {
        /// The token's issuer (iss claim)
        #[arg(long, value_name = "ISS")]
        iss: String,
        /// The token's jti claim
        #[arg(long, value_name = "JTI")]
        jti: String,
        /// The token's exp claim, if known: the revocation then lasts until it (plus the leeway)
        #[arg(long, value_name = "UNIX")]
        token_exp: Option<i64>,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Revoke every token of a subject issued before a time
    #[command(after_help = ADMIN_HELP)]
    Sub {
        /// The tokens' issuer (iss claim)
        #[arg(long, value_name = "ISS")]
        iss: String,
        /// The subject (sub claim)
        #[arg(long, value_name = "SUB")]
        sub: String,
        /// Revoke tokens issued (iat) before this time, in Unix seconds [default: now]
        #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
        before: Option<i64>,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Revoke every token signed with a key id (kid header)
    #[command(after_help = ADMIN_HELP)]
    Kid {
        /// The signing key's id
        #[arg(long, value_name = "KID")]
        kid: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Revoke an API key by its id
    #[command(after_help = ADMIN_HELP)]
    ApiKey {
        /// The key's id (key_ and 24 hex digits; never the key itself)
        #[arg(long, value_name = "ID")]
        key_id: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
}

#[derive(Subcommand)]
enum Revocations {
    /// Print every revocation, one JSON line each
    #[command(after_help = LIST_HELP)]
    List {
        /// Revocations fetched per admin API call (every page is printed)
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = count)]
        limit: usize,
        #[command(flatten)]
        admin: Admin,
    },
    /// Remove one revocation by its id
    #[command(after_help = ADMIN_HELP)]
    Remove {
        /// The revocation's id (hexadecimal, as list prints it)
        #[arg(value_name = "ID", value_parser = revocation_id)]
        id: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Add many revocations: JSON lines, each one as the admin API takes it
    /// ({"target": {...}, "reason", "expires_at"?, "token_exp"?}), sent 1,000 per batch call.
    /// Every line is read and checked first: a line that is not a JSON object sends nothing.
    /// Prints each batch's answer; stops at the first batch the API refuses (the earlier ones
    /// are stored; the import is idempotent, so it can be run again).
    #[command(after_help = ADMIN_HELP)]
    Import {
        /// The file, or - for stdin
        #[arg(value_name = "FILE")]
        file: String,
        #[command(flatten)]
        admin: Admin,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Create an API key
    #[command(after_help = NEW_KEY_HELP)]
    Create(CreateArgs),
    /// Print every API key's record (never a key or its hash), one JSON line each
    #[command(after_help = LIST_HELP)]
    List {
        /// Keys fetched per admin API call (every page is printed)
        #[arg(long, value_name = "N", default_value_t = 100, value_parser = count)]
        limit: usize,
        #[command(flatten)]
        admin: Admin,
    },
    /// Print one API key's record
    #[command(after_help = ADMIN_HELP)]
    Get(KeyIdArgs),
    /// Issue a successor key for the same id; the old key keeps working during the overlap
    #[command(after_help = NEW_KEY_HELP)]
    Rotate {
        #[command(flatten)]
        key: KeyIdArgs,
        /// How long the old key keeps working, in seconds (0 to 2592000) [default: the gateway's, 86400]
        #[arg(long, value_name = "SECS", value_parser = seconds)]
        overlap: Option<i64>,
    },
    /// Disable an API key (and revoke it at every edge)
    #[command(after_help = ADMIN_HELP)]
    Disable(KeyIdArgs),
    /// Delete an API key's record (and revoke it at every edge)
    #[command(after_help = ADMIN_HELP)]
    Delete(KeyIdArgs),
    /// Check an API key's format and checksum, offline (no lookup)
    #[command(after_help = CHECK_HELP)]
    Check {
        /// The key, or - to read it from stdin (surrounding whitespace ignored)
        #[arg(value_name = "KEY|-")]
        key: String,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// Who the key is for (its sub at the origin)
    #[arg(long, value_name = "OWNER")]
    owner: String,
    /// A scope the key grants; repeat for several [default: none]
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Rate-limit tier [default: none]
    #[arg(long, value_name = "TIER")]
    tier: Option<String>,
    /// A client network (IPv4/IPv6 CIDR) the key is accepted from; repeat for several [default: any]
    #[arg(long = "allow-ip", value_name = "CIDR")]
    allowed_ips: Vec<String>,
    /// Expire the key this many seconds from now [default: never]
    #[arg(long, value_name = "SECS", value_parser = positive_secs, conflicts_with = "expires_at")]
    expires_in: Option<i64>,
    /// Expire the key at this time, in Unix seconds [default: never]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    expires_at: Option<i64>,
    /// Refuse the key before this time, in Unix seconds [default: valid at once]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    not_before: Option<i64>,
    /// Free-text description stored with the key [default: empty]
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    #[command(flatten)]
    admin: Admin,
}

#[derive(Args)]
struct KeyIdArgs {
    /// The key's id (key_ and 24 lowercase hex digits; never the key itself)
    #[arg(value_name = "KEY_ID", value_parser = key_id)]
    id: String,
    #[command(flatten)]
    admin: Admin,
}

#[derive(Args)]
struct AuditArgs {
    /// Start at the first entry at or after this time, in Unix seconds [default: the oldest entry kept]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    since: Option<i64>,
    /// Read every entry, recompute the hash chain and print one verdict line instead of the entries
    #[arg(long)]
    verify: bool,
    /// With --verify: an entry recorded earlier (a head an earlier --verify printed, kept elsewhere), as SEQ:HASH, that the chain must still hold; repeat for several [default: none]
    #[arg(long = "anchor", value_name = "SEQ:HASH", value_parser = anchor, requires = "verify")]
    anchors: Vec<(u64, String)>,
    /// Entries fetched per admin API call (1 to 1000; every page is read)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = page_size)]
    limit: usize,
    #[command(flatten)]
    admin: Admin,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("subject").required(true).args(["key_id", "sub", "client_id"]))]
struct UsageArgs {
    /// An API key's id
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// A token subject (with --iss)
    #[arg(long, value_name = "SUB", requires = "iss")]
    sub: Option<String>,
    /// The subject's issuer
    #[arg(long, value_name = "ISS", requires = "sub")]
    iss: Option<String>,
    /// An OAuth client (the azp or client_id claim)
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// From this time, in Unix seconds [default: a day before --to]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    from: Option<i64>,
    /// Up to this time, in Unix seconds [default: now]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = unix_time)]
    to: Option<i64>,
    /// The series' resolution
    #[arg(long, value_name = "G", default_value = "minute", value_parser = ["minute", "hour", "day"])]
    granularity: String,
    #[command(flatten)]
    admin: Admin,
}

#[derive(Args)]
struct PathArgs {
    /// Gateway configuration (JSON) whose request section and routes apply [default: the request defaults, no routes]
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// The request method
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The path as the gate receives it, with an optional ?query; - reads one per line from stdin
    #[arg(value_name = "PATH|-")]
    path: String,
}

fn unix_time(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| "takes Unix seconds (an integer)".into())
}

fn seconds(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| "takes seconds (an integer)".into())
}

fn positive_secs(s: &str) -> Result<i64, String> {
    s.parse().ok().filter(|v: &i64| *v > 0).ok_or_else(|| "takes positive seconds".into())
}

fn count(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| "takes a number".into())
}

fn anchor(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s.split_once(':').ok_or("takes SEQ:HASH")?;
    let seq = seq.parse().map_err(|_| "takes SEQ:HASH (SEQ a number)")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("takes SEQ:HASH (HASH 64 hex digits)".into());
    }
    Ok((seq, hash.to_string()))
}

fn page_size(s: &str) -> Result<usize, String> {
    s.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| "takes a number from 1 to 1000".into())
}

fn http_url(s: &str) -> Result<String, String> {
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(s.to_string())
    } else {
        Err("must be an http(s) URL".into())
    }
}

fn key_id(s: &str) -> Result<String, String> {
    if edgeward::core::apikey::is_key_id(s) {
        Ok(s.to_string())
    } else {
        Err("not a key id (key_ and 24 hex digits)".into())
    }
}

fn revocation_id(s: &str) -> Result<String, String> {
    if s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_string())
    } else {
        Err("a revocation id is hexadecimal".into())
    }
}

/// The parser: the derived one, with every option's value free to start with `-` (as `--reason
/// -x` or `--before -1` always were), and `--version` saying `edgeward` in every subcommand.
fn command() -> clap::Command {
    fn tune(c: clap::Command) -> clap::Command {
        c.display_name("edgeward")
            .mut_args(|a| if a.get_long().is_some() && a.get_action().takes_values() { a.allow_hyphen_values(true) } else { a })
            .mut_subcommands(tune)
    }
    tune(Cli::command())
}

fn main() -> ExitCode {
    let cli = match command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    match run(cli.command) {
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
                eprintln!("For more information, try '--help'.");
            }
            ExitCode::from(2)
        }
    }
}

/// `--help` and `--version` print on stdout and exit 0; any other parse error is a usage error:
/// the JSON line every usage error prints, clap's message and usage on stderr, exit 2.
fn clap_failure(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    println!("{}", json!({"verdict": "error", "reason": "usage", "message": clap_message(e)}));
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap prints the command's help alone: say first what is wrong.
        eprintln!("error: {}\n", clap_message(e));
    }
    let _ = e.print();
    ExitCode::from(2)
}

/// A parse error's message, on one line.
fn clap_message(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // Only the command names were given (`edgeward`, `edgeward keys`).
        let given: Vec<String> = std::env::args().skip(1).collect();
        return if given.is_empty() { "no command".into() } else { format!("{} needs a subcommand", given.join(" ")) };
    }
    // clap's first paragraph: the error, without the usage and tips that follow.
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    first.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ")
}

type Failure = (&'static str, String, Option<String>);

fn usage(msg: impl Into<String>) -> Failure {
    ("usage", msg.into(), None)
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Verify(a) => verify(a),
        Command::Revoke(t) => admin::revoke(t),
        Command::Revocations(r) => admin::revocations(r),
        Command::Keys(k) => admin::keys(k),
        Command::Path(a) => path(a),
        Command::Audit(a) => admin::audit(a),
        Command::Usage(a) => admin::usage_series(a),
    }
}

/// The CLI is an adapter: the one place it reads the clock.
#[allow(clippy::disallowed_methods)]
fn now_secs() -> Result<i64, Failure> {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).map_err(|_| usage("system clock is before 1970"))
}

/// `revoke`, `revocations`, `keys` (but `keys check`) and `audit`: the admin API over HTTP(S).
mod admin {
    use super::{now_secs, usage, AuditArgs, Failure, Keys, Revocations, RevokeTarget, UsageArgs};
    use edgeward::core::audit::{ChainHead, ChainVerifier, Start};
    use serde_json::{json, Value};
    use std::process::ExitCode;

    pub const PREFIX: &str = "/__edgeward/admin";

    struct Admin {
        base: String,
        token: String,
    }

    impl Admin {
        fn from(a: &super::Admin) -> Result<Admin, Failure> {
            let file = &a.admin_token_file;
            let token = std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {file}: {e}")))?.trim().to_string();
            if token.is_empty() {
                return Err(usage(format!("{file} is empty")));
            }
            Ok(Admin { base: format!("{}{}", a.url.trim_end_matches('/'), a.admin_prefix), token })
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

    pub fn revoke(target: RevokeTarget) -> Result<ExitCode, Failure> {
        let (RevokeTarget::Jti { common, .. } | RevokeTarget::Sub { common, .. } | RevokeTarget::Kid { common, .. } | RevokeTarget::ApiKey { common, .. }) =
            &target;
        let admin = Admin::from(&common.admin)?;
        let now = now_secs()?;
        // A jti or subject entry need only outlive the tokens it matches: without --expires-in the
        // gateway works that out from its configuration (and the token's exp, when given).
        let natural = matches!(target, RevokeTarget::Jti { .. } | RevokeTarget::Sub { .. });
        let expires_at = common.expires_in.or((!natural).then_some(30 * 86_400)).map(|ttl| now + ttl);
        let reason = common.reason.clone().unwrap_or_default();
        let mut token_exp = None;
        let target = match target {
            RevokeTarget::Jti { iss, jti, token_exp: exp, .. } => {
                token_exp = exp;
                json!({"kind": "jti", "iss": iss, "jti": jti})
            }
            RevokeTarget::Sub { iss, sub, before, .. } => json!({"kind": "subject_before", "iss": iss, "sub": sub, "before": before.unwrap_or(now)}),
            RevokeTarget::Kid { kid, .. } => json!({"kind": "kid", "kid": kid}),
            RevokeTarget::ApiKey { key_id, .. } => json!({"kind": "api_key", "key_id": key_id}),
        };
        let mut body = json!({"target": target, "reason": reason});
        if let Some(e) = expires_at {
            body["expires_at"] = json!(e);
        }
        if let Some(e) = token_exp {
            body["token_exp"] = json!(e);
        }
        let (status, v) = admin.call("POST", "/revocations", Some(&body))?;
        finish(status, &v)
    }

    /// `revocations import`: every line checked first, then batches of 1,000.
    fn import(file: &str, admin: &Admin) -> Result<ExitCode, Failure> {
        let text = if file == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| ("input", format!("cannot read stdin: {e}"), None))?;
            s
        } else {
            std::fs::read_to_string(file).map_err(|e| ("input", format!("cannot read {file}: {e}"), None))?
        };
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => items.push(v),
                _ => return Err(("input", format!("line {}: not a JSON object", i + 1), Some(format!("line {}", i + 1)))),
            }
        }
        let (mut created, mut updated, mut unchanged) = (0u64, 0u64, 0u64);
        for (b, chunk) in items.chunks(1000).enumerate() {
            let (status, v) = admin.call("POST", "/revocations/batch", Some(&json!({"items": chunk})))?;
            if status != 200 {
                // Which input item was refused, counted from the first (not from the batch).
                let mut v = v;
                if let Some(i) = v["index"].as_u64() {
                    v["item"] = json!(b as u64 * 1000 + i + 1);
                }
                v["stored_before"] = json!(created + updated + unchanged);
                return finish(status, &v);
            }
            created += v["created"].as_u64().unwrap_or(0);
            updated += v["updated"].as_u64().unwrap_or(0);
            unchanged += v["unchanged"].as_u64().unwrap_or(0);
        }
        finish(200, &json!({"items": items.len(), "created": created, "updated": updated, "unchanged": unchanged}))
    }

    pub fn revocations(r: Revocations) -> Result<ExitCode, Failure> {
        match r {
            Revocations::List { limit, admin } => list_all(&Admin::from(&admin)?, "/revocations", limit),
            Revocations::Import { file, admin } => import(&file, &Admin::from(&admin)?),
            Revocations::Remove { id, admin } => {
                let (status, v) = Admin::from(&admin)?.call("DELETE", &format!("/revocations/{id}"), None)?;
                finish(status, &v)
            }
        }
    }

    /// `audit`: every page of the trail, printed, or verified as one chain.
    pub fn audit(args: AuditArgs) -> Result<ExitCode, Failure> {
        let admin = Admin::from(&args.admin)?;
        let since = args.since.map(|s| format!("&since={s}")).unwrap_or_default();
        let mut cursor: Option<String> = None;
        let mut verifier: Option<ChainVerifier> = None;
        loop {
            let cursor_param = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let (status, v) = admin.call("GET", &format!("/audit?limit={}{since}{cursor_param}", args.limit), None)?;
            if status != 200 {
                return finish(status, &v);
            }
            if args.verify && verifier.is_none() {
                // From the start of what is kept: the first entry ever, or the one after the last
                // entry removed for its age. From a time on: the first entry listed as it is.
                let start = match (&args.since, v["pruned_through"]["seq"].as_u64(), v["pruned_through"]["hash"].as_str()) {
                    (Some(_), ..) => Start::Trusted,
                    (None, Some(seq), Some(hash)) => Start::After { seq, hash: hash.to_string() },
                    (None, ..) => Start::Genesis,
                };
                let mut chain = ChainVerifier::new(start);
                for (seq, hash) in &args.anchors {
                    chain.expect(*seq, hash);
                }
                verifier = Some(chain);
            }
            for item in v["items"].as_array().into_iter().flatten() {
                match verifier.as_mut() {
                    Some(chain) => {
                        if let Err(e) = chain.push(item) {
                            return broken(&e);
                        }
                    }
                    None => println!("{item}"),
                }
            }
            match v["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => {
                    let Some(chain) = verifier else { return Ok(ExitCode::SUCCESS) };
                    // The head as the trail reported it with the last page: the entries must end there.
                    let head = match (v["head"]["seq"].as_u64(), v["head"]["hash"].as_str()) {
                        (Some(seq), Some(hash)) => Some(ChainHead { seq, hash: hash.to_string(), time: 0 }),
                        _ => None,
                    };
                    return match chain.finish(head.as_ref()) {
                        Ok(done) => {
                            let head = done.head.map(|h| json!({"seq": h.seq, "hash": h.hash}));
                            println!("{}", json!({"verified": true, "entries": done.entries, "first_seq": done.first_seq, "head": head}));
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => broken(&e),
                    };
                }
            }
        }
    }

    /// Percent-encodes a query parameter's value (everything but RFC 3986's unreserved).
    fn encode(v: &str) -> String {
        v.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
    }

    /// `usage`: the series, one point per line.
    pub fn usage_series(args: UsageArgs) -> Result<ExitCode, Failure> {
        let admin = Admin::from(&args.admin)?;
        let mut q = match (&args.key_id, &args.sub, &args.client_id) {
            (Some(k), ..) => format!("key_id={}", encode(k)),
            (_, Some(s), _) => format!("sub={}&iss={}", encode(s), encode(args.iss.as_deref().unwrap_or(""))),
            (.., Some(c)) => format!("client_id={}", encode(c)),
            _ => return Err(usage("one of --key-id, --sub (with --iss) or --client-id")),
        };
        for (name, v) in [("from", args.from), ("to", args.to)] {
            if let Some(v) = v {
                q.push_str(&format!("&{name}={v}"));
            }
        }
        q.push_str(&format!("&granularity={}", args.granularity));
        let (status, v) = admin.call("GET", &format!("/usage?{q}"), None)?;
        if status != 200 {
            return finish(status, &v);
        }
        for point in v["series"].as_array().into_iter().flatten() {
            println!("{point}");
        }
        Ok(ExitCode::SUCCESS)
    }

    fn broken(e: &edgeward::core::audit::ChainError) -> Result<ExitCode, Failure> {
        println!("{}", json!({"verified": false, "problem": e.code(), "seq": e.seq(), "message": e.to_string()}));
        Ok(ExitCode::from(1))
    }

    pub fn keys(k: Keys) -> Result<ExitCode, Failure> {
        let (status, v) = match k {
            Keys::Create(c) => {
                let admin = Admin::from(&c.admin)?;
                let expires_at = match (c.expires_at, c.expires_in) {
                    (Some(t), _) => Some(t),
                    (None, Some(s)) => Some(now_secs()? + s),
                    (None, None) => None,
                };
                let body = json!({
                    "owner": c.owner,
                    "description": c.description.unwrap_or_default(),
                    "scopes": c.scopes,
                    "tier": c.tier,
                    "allowed_ips": c.allowed_ips,
                    "not_before": c.not_before,
                    "expires_at": expires_at,
                });
                admin.call("POST", "/keys", Some(&body))?
            }
            Keys::List { limit, admin } => return list_all(&Admin::from(&admin)?, "/keys", limit),
            Keys::Get(k) => Admin::from(&k.admin)?.call("GET", &format!("/keys/{}", k.id), None)?,
            Keys::Delete(k) => Admin::from(&k.admin)?.call("DELETE", &format!("/keys/{}", k.id), None)?,
            Keys::Disable(k) => Admin::from(&k.admin)?.call("POST", &format!("/keys/{}/disable", k.id), Some(&json!({})))?,
            Keys::Rotate { key, overlap } => {
                let mut body = json!({});
                if let Some(o) = overlap {
                    body["overlap_secs"] = json!(o);
                }
                Admin::from(&key.admin)?.call("POST", &format!("/keys/{}/rotate", key.id), Some(&body))?
            }
            Keys::Check { key } => return super::keys_check(&key),
        };
        finish(status, &v)
    }
}

/// `keys check KEY|-`: format and checksum, offline.
fn keys_check(arg: &str) -> Result<ExitCode, Failure> {
    use edgeward::core::apikey::PresentedKey;
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

fn path(args: PathArgs) -> Result<ExitCode, Failure> {
    use edgeward::core::access::Requirement;
    use edgeward::core::canonical::{canonicalize, PathRules, RequestPolicy};
    let PathArgs { config, method, path: target } = args;
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

fn verify(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let VerifyArgs { config, token_file, now, explain, dpop_proof, method, url } = args;
    let proof = match &dpop_proof {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| usage(format!("cannot read {f}: {e}")))?.trim().to_string()),
        None => None,
    };
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
    let gate = Gate::new(policy);
    let (verdict, log) = gate.verify_inline(token, NativeBackend, now, explain);
    // As the gate decides: a DPoP-bound token needs its proof; without one it is a bearer token.
    let verdict = verdict.and_then(|v| match (&proof, v.dpop_jkt()) {
        (None, None) => Ok((v, None)),
        (None, Some(_)) => Err(edgeward::core::error::AuthError::DpopBoundAsBearer),
        (Some(p), _) => {
            let (m, u) = (method.as_deref().unwrap_or("GET"), url.as_deref().unwrap_or(""));
            gate.check_dpop_inline(p, &m.to_ascii_uppercase(), u, token, &v, NativeBackend, now).map(|c| (v, Some(c.jkt)))
        }
    });
    let (mut out, code) = match verdict {
        Ok((v, jkt)) => {
            let mut out = json!({
                "verdict": "accept",
                "reason": null,
                "token_fp": fp,
                "now": now,
                "alg": v.alg().map(|a| a.name()),
                "kid": v.kid(),
                "claims": v.claims(),
            });
            if let Some(jkt) = jkt {
                out["dpop"] = json!({"jkt": jkt});
            }
            (out, ExitCode::SUCCESS)
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
            (out, ExitCode::from(1))
        }
    };
    if explain {
        out["steps"] = steps(log.trace.unwrap_or_default(), &realm);
    }
    println!("{out}");
    Ok(code)
}

/// `verify --explain`: the steps the pipeline took, as the JS package's `explain` reports them (a
/// refusal as its client message and reason code).
fn steps(trace: Vec<edgeward::core::log::Step>, realm: &str) -> serde_json::Value {
    let steps = trace.into_iter().map(|s| match s.outcome {
        Ok(detail) => json!({"step": s.name, "result": "pass", "detail": detail}),
        Err(e) => {
            let r = e.rejection(realm);
            json!({"step": s.name, "result": "fail", "detail": format!("{} ({})", r.message, r.code)})
        }
    });
    serde_json::Value::Array(steps.collect())
}
