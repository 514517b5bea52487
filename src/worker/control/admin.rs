//! The admin API under `admin.path_prefix`: one authorization step, an audit trail entry for every
//! refused call and every admin write (`audit`), one audit log line for every call, then
//! `/revocations…` (the ledger), `/keys…` (API keys) or `/audit…` (the trail).
//!
//! A caller is an admin when it presents, as `Authorization: Bearer`, either the
//! `EDGEWARD_ADMIN_TOKEN` secret (compared in constant time) or, when `admin.jwt_scope` is set, a
//! JWT of a configured issuer that verifies, is not revoked, and holds that scope.

use super::answer::AdminAnswer;
use super::audit;
use crate::core::audit::{AdminAction, AuditRecord};
use crate::core::identity::Identity;
use crate::core::log::{fingerprint, DecisionLog};
use crate::core::pipeline::Gate;
use crate::worker::runtime::WorkerIo;
use worker::{console_log, Request, Response};

/// Worker secret holding the admin token.
pub const ADMIN_SECRET: &str = "EDGEWARD_ADMIN_TOKEN";

fn bearer(headers: &[(String, String)]) -> Option<&str> {
    let v = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization"))?.1.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

/// Who the caller is (`admin_token` or `jwt:<iss> <sub>`), or why not.
async fn authorize(headers: &[(String, String)], io: &WorkerIo, gate: &Gate, now: i64) -> Result<String, String> {
    use crate::core::io::GateIo;
    use subtle::ConstantTimeEq;
    let policy = gate.policy();
    let presented = bearer(headers).ok_or("no bearer credential")?;
    if let Some(secret) = io.secret(ADMIN_SECRET).filter(|s| s.len() >= 16) {
        if presented.len() == secret.len() && bool::from(presented.as_bytes().ct_eq(secret.as_bytes())) {
            return Ok("admin_token".into());
        }
    }
    let Some(scope) = &policy.admin.jwt_scope else { return Err("not the admin token".into()) };
    if presented.split('.').count() != 3 {
        return Err("not the admin token, not a JWT".into());
    }
    let mut log = DecisionLog::default();
    let token = gate
        .verify_jwt(io, presented, &crate::core::token_cache::token_hash(presented), now, &mut log)
        .await
        .map_err(|e| format!("admin JWT refused: {}", e.code()))?;
    if !token.scopes().any(|s| s == scope) {
        return Err(format!("admin JWT lacks the {scope} scope"));
    }
    if policy.revocations.enabled {
        // The ledger itself, not the snapshot: no propagation delay for the most powerful tokens.
        gate.check_ledger(io, Identity::Token(&token)).await.map_err(|e| format!("admin JWT refused: {}", e.code()))?;
    }
    Ok(format!("jwt:{} {}", token.issuer().unwrap_or("-"), token.subject().unwrap_or("-")))
}

fn json(status: u16, body: &serde_json::Value) -> worker::Result<Response> {
    let mut r = Response::ok(body.to_string())?.with_status(status);
    let h = r.headers_mut();
    let _ = h.set("content-type", "application/json");
    let _ = h.set("cache-control", "no-store");
    Ok(r)
}

/// Handles every request under the admin prefix: authorizes it; records a refused call, or an
/// admin's call that can change state (any method but GET and HEAD), in the audit trail; answers.
/// A recorded call is answered only once its entry is stored: when the entry cannot be stored,
/// a write is not attempted (no `EDGEWARD_AUDIT` binding) or its answer becomes a 503.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    mut req: Request,
    io: &WorkerIo,
    gate: &Gate,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    rid: &str,
    now: i64,
) -> worker::Result<Response> {
    let (policy, env) = (gate.policy(), io.env());
    let method = req.method().to_string().to_ascii_uppercase();
    let rest = path.strip_prefix(policy.admin.path_prefix.as_str()).unwrap_or("");
    let principal = authorize(headers, io, gate, now).await;
    let (action, path_target) = AdminAction::classify(&method, rest);
    let actor = bearer(headers).map(|t| fingerprint(t.as_bytes()));
    let log = |op: &str, status: u16, id: Option<&str>, seq: Result<Option<u64>, &str>| {
        let (who, why) = match &principal {
            Ok(p) => (Some(p.as_str()), None),
            Err(e) => (None, Some(e.as_str())),
        };
        console_log!(
            "{}",
            serde_json::json!({"event": "admin_audit", "request_id": rid, "op": op, "action": action.name(), "method": method, "path": path,
                "authorized": principal.is_ok(), "principal": who, "denied_because": why,
                "credential_fp": actor, "status": status, "id": id,
                "audit_seq": seq.ok().flatten(), "audit_error": seq.err()})
        );
    };
    let principal_name = match &principal {
        Ok(p) => p.clone(),
        Err(why) => {
            let record = AuditRecord::denied(actor.clone(), action, path_target, why, rid);
            match audit::append_record(env, &record).await {
                Ok(seq) => log("denied", 401, None, Ok(Some(seq))),
                // Nothing was done; the refusal stands, and this line records it.
                Err(e) => log("denied", 401, None, Err(&e)),
            }
            let mut r = json(401, &serde_json::json!({"code": "admin_unauthorized", "message": "admin credential required", "request_id": rid}))?;
            let _ = r.headers_mut().set("www-authenticate", "Bearer realm=\"edgeward-admin\"");
            return Ok(r);
        }
    };
    let recorded = AdminAction::records(&method);
    if recorded && !audit::configured(env) {
        // Nothing is written that the trail could not record.
        let e = format!("no {} binding: admin writes are refused until the audit trail is configured", audit::AUDIT_BINDING);
        log("audit_unavailable", 503, None, Err(&e));
        return json(503, &serde_json::json!({"code": "audit_unavailable", "message": e, "request_id": rid}));
    }
    let body = if method == "POST" {
        let text = req.text().await.unwrap_or_default();
        if text.trim().is_empty() {
            Ok(None)
        } else {
            match serde_json::from_slice::<serde_json::Value>(text.as_bytes()) {
                Ok(v) if v.is_object() => Ok(Some(v)),
                _ => Err(()),
            }
        }
    } else {
        Ok(None)
    };
    let a = match body {
        Err(()) => {
            AdminAnswer { status: 400, op: "bad_request", id: None, body: serde_json::json!({"code": "bad_request", "message": "body must be a JSON object"}) }
        }
        Ok(body) if rest == "/keys" || rest.starts_with("/keys/") => super::keys::admin_op(body, &method, rest, query, policy, env, now).await,
        Ok(body) if rest == "/audit" || rest.starts_with("/audit/") => audit::admin_op(body, &method, rest, query, env).await,
        Ok(_) if rest.trim_end_matches('/') == "/usage" => super::usage::admin_op(&method, query, env, now).await,
        Ok(body) => super::ledger::admin_op(body, &method, rest, query, env).await,
    };
    let mut seq = None;
    if recorded {
        let record = AuditRecord::of_answer(actor.clone(), &principal_name, action, path_target, a.status, &a.body, rid);
        match audit::append_record(env, &record).await {
            Ok(s) => seq = Some(s),
            Err(e) => {
                // The call ran (ending as `a.status` says) but is not in the trail, so it is not
                // acknowledged: its log line is its only record. (Its answer is not sent: it may
                // hold a key shown once.) Revocations are idempotent: sending one again records it.
                log(a.op, a.status, a.id.as_deref(), Err(&e));
                let message =
                    format!("the audit trail could not store this call's entry; the call itself ended with status {} (check its effect, then retry)", a.status);
                return json(503, &serde_json::json!({"code": "audit_unavailable", "message": message, "call_status": a.status, "request_id": rid}));
            }
        }
    }
    log(a.op, a.status, a.id.as_deref(), Ok(seq));
    let mut b = a.body;
    if let Some(o) = b.as_object_mut() {
        o.entry("request_id").or_insert_with(|| rid.into());
    }
    json(a.status, &b)
}
