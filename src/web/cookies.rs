//! `lintSetCookie`: the JS cookie policy mapped onto the configuration's `cookies` section
//! ([`cookie_policy_from_js`]), and the core's `Set-Cookie` enforcement ([`lint_set_cookie`]).

use super::error::WebError;
use crate::core::config::{self, ConfigError};
use crate::core::cookie::{self, CookieAction, CookiePolicy};
use serde_json::{json, Map, Value};

/// The JS cookie policy's fields and their names in the configuration's `cookies` section.
const COOKIE_FIELDS: [(&str, &str); 4] = [("mode", "mode"), ("sameSite", "same_site"), ("scriptReadable", "script_readable"), ("maxAgeSecs", "max_age_secs")];

/// Builds the core [`CookiePolicy`] from the JS object `{mode?, sameSite?, scriptReadable?,
/// maxAgeSecs?}` (`null`: all defaults). It is validated as the `cookies` section of a
/// configuration document, so defaults and rules are the Worker's; errors name the JS field.
pub fn cookie_policy_from_js(policy: &Value) -> Result<CookiePolicy, WebError> {
    let empty = Map::new();
    let obj = match policy {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => return Err(WebError::config("policy", "must be an object")),
    };
    let mut cookies = Map::new();
    for (name, value) in obj {
        let Some((_, config_name)) = COOKIE_FIELDS.iter().find(|(js, _)| js == name) else {
            return Err(WebError::config(name.as_str(), "unknown field"));
        };
        cookies.insert((*config_name).to_string(), value.clone());
    }
    // Parsed and validated as the configuration's `cookies` section is.
    let parsed = config::section::<CookiePolicy>("cookies", &Value::Object(cookies)).and_then(|p| p.validate().map(|()| p).map_err(ConfigError::from));
    parsed.map_err(|e| {
        let rest = e.field.strip_prefix("cookies").unwrap_or(&e.field).trim_start_matches('.');
        let field = COOKIE_FIELDS.iter().find(|(_, c)| rest.starts_with(c)).map_or_else(|| "policy".to_string(), |(js, c)| format!("{js}{}", &rest[c.len()..]));
        WebError::config(field, e.message)
    })
}

/// What the edge does with one `Set-Cookie` header under `policy` at `now`: the core's
/// [`cookie::enforce`], as `{name, findings, action, header}` where `header` is what the edge
/// sends on (`null` when it drops the cookie).
pub fn lint_set_cookie(header: &str, policy: &CookiePolicy, now: i64) -> Value {
    let report = cookie::enforce(header, policy, now);
    let (action, sent) = match report.action {
        CookieAction::Keep => ("keep", Some(header.to_string())),
        CookieAction::Fixed(fixed) => ("fix", Some(fixed)),
        CookieAction::Drop => ("drop", None),
    };
    json!({"name": report.name, "findings": report.findings, "action": action, "header": sent})
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn cookie_lint_is_the_edges_enforcement() {
        let p = cookie_policy_from_js(&Value::Null).unwrap();
        let got = lint_set_cookie("session=abc; Path=/", &p, NOW);
        assert_eq!(got["name"], "session");
        assert_eq!(got["findings"], json!(["missing_secure", "missing_httponly", "missing_samesite"]));
        assert_eq!(got["action"], "fix");
        let fixed = got["header"].as_str().unwrap();
        assert!(fixed.contains("Secure") && fixed.contains("HttpOnly") && fixed.contains("SameSite=Lax"), "{fixed}");
        let good = "__Host-id=1; Path=/; Secure; HttpOnly; SameSite=Strict";
        assert_eq!(lint_set_cookie(good, &p, NOW), json!({"name": "__Host-id", "findings": [], "action": "keep", "header": good}));
        let drop = cookie_policy_from_js(&json!({"mode": "drop", "scriptReadable": ["theme"]})).unwrap();
        let got = lint_set_cookie("theme=dark; Secure; SameSite=Lax", &drop, NOW);
        assert_eq!((got["findings"].clone(), got["action"].as_str()), (json!([]), Some("keep")), "script-readable needs no HttpOnly");
        let got = lint_set_cookie("sid=1", &drop, NOW);
        assert_eq!((got["action"].as_str(), &got["header"]), (Some("drop"), &Value::Null));
        let report = cookie_policy_from_js(&json!({"mode": "report", "sameSite": "Strict", "maxAgeSecs": 60})).unwrap();
        let got = lint_set_cookie("a=1; Secure; HttpOnly; SameSite=Lax; Max-Age=3600", &report, NOW);
        assert_eq!((got["findings"].clone(), got["action"].as_str()), (json!(["lifetime_too_long"]), Some("keep")));
    }

    #[test]
    fn cookie_policy_errors_name_the_js_field() {
        let field = |v: Value| {
            let e = cookie_policy_from_js(&v).unwrap_err();
            assert_eq!(e.code, "config_invalid");
            e.field.unwrap()
        };
        // Validation names the field; a value of the wrong type is located by the core at the
        // level of the `cookies` section, which is the whole JS cookie policy.
        assert_eq!(field(json!({"maxAgeSecs": 0})), "maxAgeSecs");
        for bad in [json!({"mode": "explode"}), json!({"sameSite": "lax"}), json!({"scriptReadable": "theme"}), json!("fix")] {
            assert!(["policy", "mode", "sameSite", "scriptReadable"].contains(&field(bad.clone()).as_str()), "{bad}");
        }
        assert_eq!(field(json!({"max_age_secs": 5})), "max_age_secs", "snake_case names are unknown fields");
    }
}
