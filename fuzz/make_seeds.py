#!/usr/bin/env python3
"""Writes the hand-made seed corpus under fuzz/seeds/<target>/ (run from anywhere:
`python3 fuzz/make_seeds.py`). Seeds are small and deterministic; the keys are the fixed test
keys the targets use (fuzz_targets/token.rs). Needs only the standard library, plus the
`cryptography` package for the Ed25519 token seeds (skipped without it)."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
NOW = 1_700_000_000
HS_ISS = "https://hs.example"
ED_ISS = "https://ed.example"
K1 = bytes([0x11] * 64)
K2 = bytes([0x22] * 32)
K_WRONG = bytes([0x33] * 64)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def js(v):
    return json.dumps(v, separators=(",", ":"))


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def hs(alg, key, header, claims):
    h = b64(header.encode() if isinstance(header, str) else js(header).encode())
    c = b64(claims.encode() if isinstance(claims, str) else js(claims).encode())
    dig = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(key, f"{h}.{c}".encode(), dig).digest()
    return f"{h}.{c}.{b64(sig)}"


def good_claims(iss=HS_ISS, **kw):
    c = {"iss": iss, "sub": "user-1", "aud": "api", "iat": NOW - 10, "exp": NOW + 600, "scope": "read write"}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def token_seeds():
    t = "token"
    raw = lambda name, tok: write(t, name, b"\x00" + tok.encode())
    raw("hs256_h1", hs("HS256", K1, {"alg": "HS256", "kid": "h1", "typ": "JWT"}, good_claims()))
    raw("hs384_h1", hs("HS384", K1, {"alg": "HS384", "kid": "h1"}, good_claims(aud=["x", "api"])))
    raw("hs512_nokid", hs("HS512", K1, {"alg": "HS512"}, good_claims(scp=["a", "b"], nbf=NOW - 5)))
    raw("hs256_h2", hs("HS256", K2, {"alg": "HS256", "kid": "h2", "typ": "at+jwt"}, good_claims(jti="j1")))
    raw("expired", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, good_claims(exp=NOW - 3600, iat=NOW - 7200)))
    raw("nbf_future", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, good_claims(nbf=NOW + 3600)))
    raw("wrong_aud", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, good_claims(aud="other")))
    raw("too_long_life", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, good_claims(exp=NOW + 200000)))
    raw("wrong_key", hs("HS256", K_WRONG, {"alg": "HS256", "kid": "h1"}, good_claims()))
    raw("alg_none", b64(b'{"alg":"none"}') + "." + b64(js(good_claims()).encode()) + ".")
    raw("dup_alg", hs("HS256", K1, '{"alg":"HS256","alg":"none","kid":"h1"}', good_claims()))
    raw("dup_claim", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, '{"iss":"https://hs.example","sub":"a","sub":"b","exp":1700000600}'))
    raw("crit", hs("HS256", K1, {"alg": "HS256", "kid": "h1", "crit": ["exp"]}, good_claims()))
    raw("escaped_alg", hs("HS256", K1, '{"alg":"HS\\u0032\\u00356","kid":"h\\u0031"}', good_claims()))
    raw("float_exp", hs("HS256", K1, {"alg": "HS256", "kid": "h1"}, good_claims(exp=1700000600.5, iat=1.7e9)))
    raw("garbage", "a.b.c")
    raw("two_parts", "eyJhbGciOiJIUzI1NiJ9.e30")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sk = Ed25519PrivateKey.from_private_bytes(bytes([0x44] * 32))
        h = b64(js({"alg": "EdDSA", "kid": "e1"}).encode())
        c = b64(js(good_claims(iss=ED_ISS, aud=None)).encode())
        raw("eddsa_e1", f"{h}.{c}.{b64(sk.sign(f'{h}.{c}'.encode()))}")
    except ImportError:
        pass
    # Structured mode: [1, signer, opts, body]; opts bit 0 = harness header, bit 1 = flip a bit.
    st = lambda name, signer, opts, body: write(t, name, bytes([1, signer, opts]) + body)
    claims = js(good_claims()).encode()
    for s in range(10):
        st(f"st_signer{s}", s, 1, js(good_claims(iss=ED_ISS if s in (4, 5, 8) else HS_ISS, aud=None if s in (4, 5, 8) else "api")).encode())
    st("st_flip", 0, 3 | (37 << 2), claims)
    st("st_header", 0, 0, js({"alg": "HS256", "kid": "h1", "typ": "JWT", "cty": "json"}).encode() + b"\x00" + claims)
    st("st_header_ed", 4, 0, js({"alg": "EdDSA", "kid": "e1", "jku": "https://evil"}).encode() + b"\x00" + js(good_claims(iss=ED_ISS)).encode())
    st("st_header_b64", 0, 0, b'{"alg":"HS256","kid":"h1","b64":false}\x00' + claims)
    st("st_kid_num", 0, 0, b'{"alg":"HS256","kid":1}\x00' + claims)
    st("st_nested", 0, 0, b'{"alg":"HS256","kid":"h1","cty":"JWT"}\x00' + claims)
    st("st_claims_types", 0, 1, b'{"iss":"https://hs.example","aud":["api",1],"exp":1700000600,"sub":5}')
    st("st_claims_scp", 0, 1, b'{"iss":"https://hs.example","aud":"api","exp":1700000600,"scp":"a b","scope":"c"}')


# Well-known curve points (the generators) so EC keys get past point validation.
P256 = ("6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296", "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5")
P384 = (
    "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C3A545E3872760AB7",
    "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A60B1CE1D7E819D7A431D7C90EA0E5F",
)
P521 = (
    "00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5BD66",
    "011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD16650",
)
ED_PK = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"  # RFC 8032 test 1


def rsa_n(bits):
    n = bytearray(hashlib.sha512(b"n").digest() * (bits // 512 + 1))[: bits // 8]
    n[0] |= 0x80
    n[-1] |= 1
    return b64(bytes(n))


def jwks_seeds():
    t = "jwks"
    h = bytes.fromhex
    ec = lambda crv, p, **kw: dict({"kty": "EC", "crv": crv, "x": b64(h(p[0])), "y": b64(h(p[1]))}, **kw)
    keys = {
        "rsa2048": {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": rsa_n(2048), "e": "AQAB"},
        "rsa4096_ps": {"kty": "RSA", "kid": "r2", "alg": "PS512", "n": rsa_n(4096), "e": "AQAB"},
        "rsa_small": {"kty": "RSA", "n": rsa_n(1024), "e": "AQAB"},
        "rsa_e3": {"kty": "RSA", "n": rsa_n(2048), "e": "Aw"},
        "rsa_private": {"kty": "RSA", "n": rsa_n(2048), "e": "AQAB", "d": "AQAB"},
        "p256": ec("P-256", P256, kid="e256", key_ops=["verify"]),
        "p384": ec("P-384", P384, kid="e384", alg="ES384"),
        "p521": ec("P-521", P521, kid="e521"),
        "p256_short": {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 31), "y": b64(b"\x01" * 32)},
        "secp256k1": {"kty": "EC", "crv": "secp256k1", "x": b64(b"\x01" * 32), "y": b64(b"\x01" * 32)},
        "ed25519": {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "x": b64(h(ED_PK))},
        "x25519": {"kty": "OKP", "crv": "X25519", "x": b64(b"\x09" * 32)},
        "oct": {"kty": "oct", "kid": "o", "k": b64(b"\x07" * 32)},
        "enc": {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": rsa_n(2048), "e": "AQAB"},
        "padded_b64": {"kty": "OKP", "crv": "Ed25519", "x": b64(h(ED_PK)) + "="},
    }
    for name, k in keys.items():
        write(t, f"doc_{name}", b"\x00" + js({"keys": [k]}).encode())
    write(t, "doc_all", b"\x04" + js({"keys": list(keys.values())}).encode())
    write(t, "doc_mixed_inline", b"\x08" + js({"keys": [keys["oct"], keys["ed25519"]]}).encode())
    write(t, "doc_dup_member", b"\x00" + b'{"keys":[],"keys":[]}')
    write(t, "doc_not_set", b"\x0c" + b'{"nokeys":[]}')
    write(t, "doc_empty", b"\x10" + b'{"keys":[]}')
    write(t, "doc_nested", b"\x14" + js({"keys": [keys["p256"]], "extra": {"a": [1, 2.5, None, True, "x\u00e9"]}}).encode())
    doc = js({"keys": [keys["ed25519"], keys["p256"]]})
    snap = {"v": 1, "jwks_uri": "https://id.example/.well-known/jwks.json", "fetched_at": NOW - 100, "ttl_secs": 600, "jwks": doc}
    write(t, "snap_json", b"\x01" + js(snap).encode())
    write(t, "snap_json_future", b"\x01" + js(dict(snap, fetched_at=NOW + 10000)).encode())
    write(t, "snap_json_other_uri", b"\x01" + js(dict(snap, jwks_uri="https://other/jwks")).encode())
    write(t, "snap_bin", b"\x02" + struct.pack(">qq", NOW - 100, 600) + doc.encode())
    write(t, "snap_bin_old", b"\x02" + struct.pack(">qq", NOW - 10**6, 86400) + doc.encode())
    for i, cc in enumerate(["max-age=600", "public, max-age=\"90\"", "no-store", "max-age=99999999999999999999999", "s-maxage=5, max-age=", "MAX-AGE=7200,no-cache"]):
        write(t, f"cc_{i}", b"\x03" + cc.encode())


def config_seeds():
    t = "config"
    base = {"issuers": [{"issuer": "https://id.example", "jwks_uri": "https://id.example/jwks", "algorithms": ["RS256"]}], "origin": "https://origin.example/"}
    write(t, "minimal", js(base))
    full = {
        "issuers": [
            {"issuer": "https://id.example", "audiences": ["api"], "jwks_uri": "https://id.example/jwks", "algorithms": ["RS256", "ES256", "EdDSA"],
             "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(bytes.fromhex(ED_PK))}]}},
            {"issuer": "https://hs.example", "algorithms": ["HS256"], "jwks": {"keys": [{"kty": "oct", "kid": "h", "k": b64(K2)}]}},
        ],
        "leeway_secs": 30, "max_lifetime_secs": 3600, "require_exp": True, "max_token_bytes": 8192,
        "origin": "https://origin.example/base",
        "routes": [
            {"path": "/public/*", "public": True},
            {"path": "/admin/*", "scopes": ["admin"], "sensitive": True, "methods": ["get", "POST"]},
            {"path": "/keys/*", "auth": "either", "upstream_credential": "backend"},
            {"path": "/Case/*", "case_insensitive": True},
            {"path": "*"},
        ],
        "realm": "api", "cookie_name": "__Host-token", "query_param": "access_token",
        "forward_claims": {"X-User": "sub", "x-plan": "plan"}, "request_id_header": "X-Request-Id",
        "jwks_cache": {"min_ttl_secs": 60, "max_ttl_secs": 3600, "unknown_kid_cooldown_secs": 10, "max_stale_secs": 600, "fetch_timeout_ms": 2000},
        "cookies": {"mode": "fix", "same_site": "Strict", "script_readable": ["ui"], "max_age_secs": 3600},
        "csrf": {"enabled": True, "allowed_origins": ["https://app.example"], "header": "x-csrf", "cookie": "__Host-csrf"},
        "token_cache": {"capacity": 100, "max_ttl_secs": 60, "max_bytes": 65536},
        "rate_limits": {"mode": "local", "ip_pre_auth": {"rate": 100, "period_secs": 60, "burst": 20}, "ipv6_prefix_len": 56, "local_capacity": 1000,
                        "rules": [{"name": "per-sub", "key": "sub", "rate": 10, "period_secs": 1, "burst": 5, "path": "/api/*", "tier_claim": "plan",
                                   "tiers": {"pro": {"rate": 100, "period_secs": 1, "burst": 50}}}]},
        "revocations": {"enabled": True, "refresh_secs": 5, "max_age_secs": 60},
        "admin": {"path_prefix": "/__edgeward/admin", "jwt_scope": "edgeward:admin"},
        "api_keys": {"header": "X-Api-Key", "environment": "test", "cache_ttl_secs": 10, "negative_cache_ttl_secs": 5, "cache_capacity": 1000},
        "upstream_credentials": {"backend": {"header": "x-backend-auth", "value": "Bearer {secret}", "secret": "BACKEND_TOKEN"}},
        "request": {"escaped_slashes": "keep", "path_params": "strip", "case_insensitive": False, "method_override": "reject",
                    "underscore_headers": "keep", "forwarded_headers": "strip", "claim_values": "percent", "max_path_bytes": 2048},
    }
    write(t, "full", js(full))
    write(t, "full_pretty", json.dumps(full, indent=2))
    bad = [
        dict(base, issuers=[]),
        dict(base, issuers=[{"issuer": None, "jwks_uri": "http://evil/jwks", "algorithms": ["RS256"]}]),
        dict(base, issuers=[{"issuer": "a", "jwks_uri": "https://x/j", "algorithms": ["HS256", "RS256"]}]),
        dict(base, routes=[{"path": "/a/../b"}]),
        dict(base, routes=[{"path": "/a*"}]),
        dict(base, request={"max_path_bytes": 1}),
        dict(base, jwks_cache={"min_ttl_secs": 10, "max_ttl_secs": 5}),
        dict(base, leeway_secs=-1),
        dict(base, unknown=1),
        dict(base, rate_limits={"rules": [{"name": "x", "key": "claim:", "rate": 1, "period_secs": 1, "burst": 1}]}),
        dict(base, upstream_credentials={"u": {"header": "host", "secret": "S"}}),
        dict(base, rate_limits={"local_capacity": 0}),
        dict(base, token_cache={"max_bytes": 0}),
    ]
    for i, b in enumerate(bad):
        write(t, f"bad_{i}", js(b))
    write(t, "not_json", "{\"issuers\": [")
    write(t, "dup_keys", '{"origin":"https://a","origin":"https://b","issuers":[{"issuer":"i","jwks_uri":"https://x","algorithms":["ES256"]}]}')


def cookie_seeds():
    t = "set_cookie"
    headers = [
        "sid=abc",
        "sid=abc; Secure; HttpOnly; SameSite=Lax; Path=/",
        "id=1; Max-Age=99999999; Path=/",
        "id=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
        "id=1; expires=Thu, 01-Jan-1970 00:00:01 GMT; max-age=-1",
        "__Host-sess=x; Secure; HttpOnly; SameSite=Strict; Path=/",
        "__Host-sess=x; Path=/a; Domain=example.com",
        "__Secure-x=1; SameSite=None",
        "a=b; SameSite=None; Secure",
        "a=b; SameSite=bogus; samesite=Lax",
        "a=b; Priority=High; Partitioned; Secure; HttpOnly; SameSite=Lax; Max-Age=60",
        " x = y ;  secure ; httponly\t;",
        "noequals",
        "=novalue",
        "a=b; Secure\u00a0",
        "caf\u00e9=cr\u00e8me; Max-Age=30",
        "a=b; Max-Age=60; Max-Age=abc",
        "a=b; Expires=Sun, 06 Nov 1994 08:49:37 GMT; Expires=junk",
    ]
    for i, h in enumerate(headers):
        for f in (0, 1, 2, 9, 19):
            write(t, f"h{i:02}_{f}", bytes([f]) + h.encode())


def path_seeds():
    t = "canonical_path"
    paths = [
        "/", "/a/b", "/a/./b/../c", "/%2e%2e/x", "/%2E/x", "/a;x/b", "/..;/admin", "/caf%C3%A9", "/caf\u00e9", "/a%2Fb", "/a%5cb", "/a\\b",
        "//admin//x", "/public/../admin/x", "/%41dmin/%7e", "/%2541", "/%25zz", "/%zz", "/%", "/a%00b", "/\uff0fadmin", "/\u2024\u2024/x",
        "/admin/", "/ADMIN/x", "/\u212aelvin", "/a b/\"q\"", "/x;y/z", "/sl%2Fash/x", "/q%20r", "/~u/./../~u/x", "*", "http://h/x", "",
        "/a/b/.", "/a/b/..", "/%C0%AF", "/%ED%A0%80", "/%F0%9F%98%80", "/%3B/x", "/a/%2e%2E/b", "/.%2e/x", "/a;jsessionid=1/b;c",
        "/health", "/a?b#c", "/a\x7f", "/%7F", "/\u00a0", "/admin./x", "/admin%20/x", "/ADMINI~1/x", "/admin::$INDEX_ALLOCATION/x",
        "/report~2024.pdf", "/Docs/x", "/docs/x", "/DOCS", "/admin", "/admin/", "/a/b/",
    ]
    # Byte 0 picks the request switches: bit 0 escaped_slashes keep, bit 1 windows_aliases keep,
    # bit 2 case_insensitive, bit 3 case_ambiguity allow, bits 4-7 mod 3 path_params (reject,
    # strip, keep).
    for i, p in enumerate(paths):
        write(t, f"p{i:02}_default", b"\x00" + p.encode())
        f = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x13, 0x27, 0x2B][i % 9]
        write(t, f"p{i:02}_{f:02x}", bytes([f]) + p.encode())
    write(t, "invalid_utf8", b"\x00/a\xff\xfe/b")
    write(t, "overlong_raw", b"\x01/\xc0\xaf")


def ip_seeds():
    t = "ip"
    ips = ["203.0.113.9", " 2001:db8::1 ", "::ffff:192.0.2.1", "::ffff:c000:201", "::1", "::", "0.0.0.0", "255.255.255.255", "fe80::1%eth0",
           "2001:db8:0:0:1:0:0:1", "2001:DB8::A", "010.0.0.1", "1.2.3", "[::1]", "1.2.3.4:80", "::192.0.2.1", "64:ff9b::192.0.2.1",
           "10.0.0.0/8", "10.0.0.1/8", "2001:db8::/32", "::ffff:10.0.0.0/104", "::ffff:10.0.0.0/64", "1.2.3.4/32", "1.2.3.4/33", "fd00::/129"]
    for i, ip in enumerate(ips):
        write(t, f"ip{i:02}", bytes([(i * 37) % 256 if i % 3 else 64]) + ip.encode())


ALPHA = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def checksum(s):
    v = zlib.crc32(s.encode()) & 0xFFFFFFFF
    out = ""
    for _ in range(6):
        out = ALPHA[v % 62] + out
        v //= 62
    return out


def apikey_seeds():
    t = "apikey"
    for env in ("live", "test"):
        body = "".join(ALPHA[(i * 7 + len(env)) % 62] for i in range(32))
        signed = f"ew_{env}_{body}"
        write(t, f"valid_{env}", b"\x00" + (signed + checksum(signed)).encode())
        write(t, f"badsum_{env}", b"\x00" + (signed + "000000").encode())
    write(t, "short", b"\x00ew_live_abc")
    write(t, "other_prefix", b"\x00ew_prod_" + b"a" * 38)
    write(t, "nonalnum", b"\x00ew_live_" + b"a" * 37 + b"-")
    write(t, "key_id", b"\x00key_0123456789abcdef01234567")
    write(t, "key_hash", b"\x00" + b"ab" * 32)
    for i, env in enumerate((1, 3)):
        rnd = hashlib.sha512(bytes([i])).digest()
        write(t, f"gen_{i}", bytes([env]) + rnd + bytes([i * 13, 0x41 + i]))
    write(t, "gen_skipped", b"\x01" + b"\xfa" * 40 + b"\x01" * 24)


def compact(version, records, count=None):
    out = b"EWRV" + bytes([2]) + struct.pack(">QI", version, len(records) if count is None else count)
    for kind, rid, exp, *before in records:
        out += struct.pack(">BQq", kind, rid, exp)
        if kind == 2:
            out += struct.pack(">q", before[0] if before else 0)
    return out


def revocation_seeds():
    t = "revocation"
    live, dead = NOW + 3600, NOW - 1
    write(t, "empty", b"\x00" + compact(7, []))
    write(t, "all_kinds", b"\x00" + compact(9, [(1, 1, live), (2, 2, live, NOW - 100), (3, 3, live), (4, 4, live)]))
    write(t, "expired", b"\x00" + compact(1, [(1, 5, dead), (2, 6, dead, 1)]))
    write(t, "dups", b"\x00" + compact(2, [(2, 6, live, 10), (2, 6, live, 5), (1, 1, live), (1, 1, live + 5)]))
    write(t, "bad_kind", b"\x00" + compact(1, [(9, 1, live)]))
    write(t, "bad_count", b"\x00" + compact(1, [(1, 1, live)], count=2))
    write(t, "trailing", b"\x00" + compact(1, [(1, 1, live)]) + b"\x00")
    write(t, "format1", b"\x00EWRV\x01" + b"\x00" * 12)
    write(t, "huge_count", b"\x00" + compact(1, [], count=0xFFFFFFFF))
    entries = [
        {"target": {"kind": "jti", "iss": "https://hs.example", "jti": "j1"}, "reason": "leak", "created_at": NOW - 5, "expires_at": live},
        {"target": {"kind": "subject_before", "iss": "https://hs.example", "sub": "user-1", "before": NOW - 60}, "reason": "logout", "created_at": NOW - 5, "expires_at": live},
        {"target": {"kind": "subject_before", "iss": "https://hs.example", "sub": "user-1", "before": NOW - 600}, "reason": "older", "created_at": NOW - 50, "expires_at": live},
        {"target": {"kind": "kid", "kid": "h1"}, "reason": "rotated", "created_at": NOW - 5, "expires_at": live},
        {"target": {"kind": "api_key", "key_id": "key_0123456789abcdef01234567"}, "reason": "", "created_at": NOW - 5, "expires_at": live},
        {"target": {"kind": "jti", "iss": "i", "jti": "old"}, "reason": "gone", "created_at": 1, "expires_at": dead},
    ]
    write(t, "json_all", b"\x01" + js({"version": 42, "entries": entries}).encode())
    write(t, "json_empty", b"\x01" + js({"version": 0, "entries": []}).encode())
    write(t, "json_bad_kind", b"\x01" + js({"version": 1, "entries": [{"target": {"kind": "nope"}, "reason": "", "created_at": 0, "expires_at": 0}]}).encode())


if __name__ == "__main__":
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    token_seeds()
    jwks_seeds()
    config_seeds()
    cookie_seeds()
    path_seeds()
    ip_seeds()
    apikey_seeds()
    revocation_seeds()
    for d in sorted(os.listdir(ROOT)):
        print(d, len(os.listdir(os.path.join(ROOT, d))))
