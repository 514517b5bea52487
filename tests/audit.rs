//! `edgeward audit` against a stub admin API serving a trail built with the core's own
//! `append`: every page is read, `--verify` passes an intact chain (also one whose oldest entries
//! were pruned) and exits 1, naming the problem, on an altered, rehashed, missing or trailing
//! entry. The trail as the control Worker serves it is covered end to end in
//! tests/e2e/audit.test.mjs.

use edgeward::core::audit::{append, entry_hash, AuditEntry, AuditRecord, ChainHead, Detail, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "admin-token-for-the-cli-test";

/// What the stub serves: the entries kept, the `pruned_through` mark and the head.
#[derive(Clone)]
struct Trail {
    entries: Vec<Value>,
    pruned: Option<(u64, String)>,
    head: (u64, String),
}

fn chain(n: u64) -> (Vec<AuditEntry>, ChainHead) {
    let mut head = ChainHead::genesis();
    let mut out = Vec::new();
    for i in 1..=n {
        let mut detail = BTreeMap::new();
        detail.insert("created".to_string(), Detail::Bool(true));
        let record = AuditRecord {
            actor: Some("sha256:0123456789abcdef".into()),
            principal: Some("admin_token".into()),
            action: "revocation_add".into(),
            target: Some(format!("{i:016x}")),
            outcome: Outcome::Ok,
            status: 201,
            reason: None,
            request_id: format!("rid-{i}"),
            detail,
        };
        let e = append(&head, record, 1_800_000_000 + i as i64 * 10);
        head = ChainHead { seq: e.seq, hash: e.hash.clone(), time: e.time };
        out.push(e);
    }
    (out, head)
}

fn trail(entries: &[AuditEntry], head: &ChainHead) -> Trail {
    Trail { entries: entries.iter().map(|e| serde_json::to_value(e).unwrap()).collect(), pruned: None, head: (head.seq, head.hash.clone()) }
}

/// Serves `GET /__edgeward/admin/audit?limit&cursor&since` from `trail` (401 without the token)
/// until the process ends; returns the base URL and a counter of the calls.
fn serve(trail: Trail) -> (String, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut authorized = false;
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                authorized |= lower == format!("authorization: bearer {TOKEN}").to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            *counted.lock().unwrap() += 1;
            let target = request_line.split_whitespace().nth(1).unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let param = |name: &str| query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
            let (status, answer) = if path != "/__edgeward/admin/audit" {
                (404, json!({"code": "not_found"}))
            } else if !authorized {
                (401, json!({"code": "admin_unauthorized", "message": "admin credential required"}))
            } else {
                let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let cursor: u64 = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                let since: i64 = param("since").and_then(|s| s.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = trail
                    .entries
                    .iter()
                    .filter(|e| e["seq"].as_u64().unwrap_or(0) > cursor && e["time"].as_i64().unwrap_or(0) >= since)
                    .take(limit)
                    .cloned()
                    .collect();
                let next = (page.len() == limit).then(|| page.last().unwrap()["seq"].to_string());
                let pruned = trail.pruned.as_ref().map(|(seq, hash)| json!({"seq": seq, "hash": hash}));
                (200, json!({"items": page, "next_cursor": next, "head": {"seq": trail.head.0, "hash": trail.head.1}, "pruned_through": pruned}))
            };
            let text = answer.to_string();
            let _ =
                write!(stream, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len());
        }
    });
    (url, calls)
}

/// Runs `edgeward audit ARGS` against `url`: (exit status, stdout lines as JSON).
fn audit(url: &str, token: &str, args: &[&str]) -> (i32, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("edgeward-audit-cli-{}-{}", std::process::id(), url.rsplit(':').next().unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(["audit", "--url", url, "--admin-token-file", token_file.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn lists_every_page_as_json_lines() {
    let (entries, head) = chain(25);
    let (url, calls) = serve(trail(&entries, &head));
    let (code, lines) = audit(&url, TOKEN, &["--limit", "10"]);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 25);
    assert_eq!(lines[24]["seq"], 25);
    assert_eq!(*calls.lock().unwrap(), 3, "three pages of 10");
    // From a time on: the entries at or after it.
    let (code, lines) = audit(&url, TOKEN, &["--since", &entries[19].time.to_string()]);
    assert_eq!((code, lines.len(), lines[0]["seq"].as_u64()), (0, 6, Some(20)));
}

#[test]
fn verify_passes_an_intact_chain_and_prints_its_head() {
    let (entries, head) = chain(25);
    let (url, _) = serve(trail(&entries, &head));
    for limit in ["1", "7", "1000"] {
        let (code, lines) = audit(&url, TOKEN, &["--verify", "--limit", limit]);
        assert_eq!(code, 0, "{lines:?}");
        assert_eq!(lines, vec![json!({"verified": true, "entries": 25, "first_seq": 1, "head": {"seq": 25, "hash": head.hash}})]);
    }
    // From a time on, the first entry is taken as it is.
    let (code, lines) = audit(&url, TOKEN, &["--verify", "--since", &entries[9].time.to_string()]);
    assert_eq!((code, lines[0]["entries"].as_u64(), lines[0]["first_seq"].as_u64()), (0, Some(16), Some(10)));
    // An empty trail is intact.
    let (url, _) = serve(trail(&[], &ChainHead::genesis()));
    let (code, lines) = audit(&url, TOKEN, &["--verify"]);
    assert_eq!((code, &lines[0]["entries"]), (0, &json!(0)));
}

#[test]
fn verify_passes_a_pruned_chain_from_its_mark() {
    let (entries, head) = chain(25);
    let mut t = trail(&entries[5..], &head);
    t.pruned = Some((5, entries[4].hash.clone()));
    let (url, _) = serve(t.clone());
    let (code, lines) = audit(&url, TOKEN, &["--verify", "--limit", "4"]);
    assert_eq!((code, lines[0]["first_seq"].as_u64(), lines[0]["entries"].as_u64()), (0, Some(6), Some(20)), "{lines:?}");
    // Entries removed beyond the mark are a gap.
    t.entries.remove(0);
    let (url, _) = serve(t);
    let (code, lines) = audit(&url, TOKEN, &["--verify"]);
    assert_eq!((code, lines[0]["problem"].as_str(), lines[0]["seq"].as_u64()), (1, Some("gap"), Some(6)));
}

#[test]
fn verify_exits_1_naming_the_broken_entry() {
    let (entries, head) = chain(25);
    let mut altered = entries.clone();
    altered[11].outcome = Outcome::Failed;
    let mut rehashed = entries.clone();
    rehashed[11].actor = Some("sha256:ffffffffffffffff".into());
    rehashed[11].hash = entry_hash(&rehashed[11]);
    let mut missing = entries.clone();
    missing.remove(11);
    let truncated = entries[..24].to_vec();
    let mut extra_member = trail(&entries, &head);
    extra_member.entries[3]["token"] = json!("eyJhbGciOi");
    let cases: Vec<(&str, Trail, &str, u64)> = vec![
        ("altered", trail(&altered, &head), "altered", 12),
        ("altered and rehashed", trail(&rehashed, &head), "unlinked", 13),
        ("removed", trail(&missing, &head), "gap", 12),
        ("last one removed", trail(&truncated, &head), "truncated", 25),
        ("a member added", extra_member, "malformed", 4),
    ];
    for (what, t, problem, seq) in cases {
        let (url, _) = serve(t);
        let (code, lines) = audit(&url, TOKEN, &["--verify", "--limit", "10"]);
        assert_eq!(code, 1, "{what}: {lines:?}");
        assert_eq!(lines.len(), 1, "{what}: one verdict line");
        assert_eq!(
            (lines[0]["verified"].as_bool(), lines[0]["problem"].as_str(), lines[0]["seq"].as_u64()),
            (Some(false), Some(problem), Some(seq)),
            "{what}: {lines:?}"
        );
        assert!(lines[0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }
}

#[test]
fn an_anchor_kept_from_an_earlier_run_catches_a_rewritten_chain() {
    let (entries, head) = chain(10);
    let (url, _) = serve(trail(&entries, &head));
    let (code, lines) = audit(&url, TOKEN, &["--verify"]);
    assert_eq!(code, 0);
    let anchor = format!("{}:{}", lines[0]["head"]["seq"], lines[0]["head"]["hash"].as_str().unwrap());
    // Later: the same chain, grown, still holds it.
    let (grown, grown_head) = chain(12);
    let (url, _) = serve(trail(&grown, &grown_head));
    assert_eq!(audit(&url, TOKEN, &["--verify", "--anchor", &anchor]).0, 0);
    // Rewritten from entry 4 on, consistently (every hash recomputed, the head too): only the anchor tells.
    let mut rewritten = grown.clone();
    rewritten[3].outcome = Outcome::Denied;
    for i in 3..rewritten.len() {
        rewritten[i].prev = rewritten[i - 1].hash.clone();
        rewritten[i].hash = entry_hash(&rewritten[i]);
    }
    let last = rewritten.last().unwrap();
    let fake_head = ChainHead { seq: last.seq, hash: last.hash.clone(), time: last.time };
    let (url, _) = serve(trail(&rewritten, &fake_head));
    assert_eq!(audit(&url, TOKEN, &["--verify"]).0, 0, "consistent on its own");
    let (code, lines) = audit(&url, TOKEN, &["--verify", "--anchor", &anchor]);
    assert_eq!((code, lines[0]["problem"].as_str(), lines[0]["seq"].as_u64()), (1, Some("anchor_mismatch"), Some(10)), "{lines:?}");
    // Cut before it.
    let (url, _) = serve(trail(&entries[..6], &head_of(&entries[5])));
    assert_eq!(audit(&url, TOKEN, &["--verify", "--anchor", &anchor]).0, 1);
}

fn head_of(e: &AuditEntry) -> ChainHead {
    ChainHead { seq: e.seq, hash: e.hash.clone(), time: e.time }
}

#[test]
fn a_refusal_is_exit_1_and_an_unreachable_gateway_exit_3() {
    let (entries, head) = chain(2);
    let (url, _) = serve(trail(&entries, &head));
    let (code, lines) = audit(&url, "not-the-admin-token", &["--verify"]);
    assert_eq!((code, lines[0]["code"].as_str()), (1, Some("admin_unauthorized")));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _) = audit(&format!("http://{closed}"), TOKEN, &["--verify"]);
    assert_eq!(code, 3);
}
