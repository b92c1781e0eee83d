"""Bearer tokens: the static token set and JWT verification, including the classic JWT attacks."""

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rapport.security.tokens import (
    InvalidToken,
    JwtVerifier,
    StaticTokens,
    Verifiers,
    parse_jwt_key,
    parse_token_file,
    token_digest,
    verifier_from_settings,
)
from rapport.settings import AuthSettings

pytestmark = pytest.mark.unit

AGENT_TOKEN = "agent-token-" + "a" * 32
IVR_TOKEN = "ivr-token-" + "b" * 32
SECRET = b"s" * 48


def write_tokens(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"tokens": entries}))
    # A distinct mtime even on coarse clocks, so a rewrite is always seen as a change.
    stamp = time.time_ns() + len(entries) * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(
        tmp_path / "tokens.json",
        [
            {"subject": "desk", "roles": ["agent"], "token": AGENT_TOKEN},
            {"subject": "ivr", "roles": ["integrator"], "sha256": token_digest(IVR_TOKEN)},
        ],
    )


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(body: dict, secret: bytes) -> str:
    """An HS256 JWT built by hand (PyJWT itself refuses a PEM key as an HMAC secret)."""
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(body).encode())
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "ana", "roles": ["agent"], "iat": now, "exp": now + 300, **extra}


# -- static token set ------------------------------------------------------------------------


def test_a_listed_token_gives_its_subject_and_roles(tokens_file: Path):
    tokens = StaticTokens(str(tokens_file))
    agent = tokens.verify(AGENT_TOKEN)
    assert (agent.subject, agent.roles, agent.source) == ("desk", frozenset({"agent"}), "token")
    assert tokens.verify(IVR_TOKEN).roles == frozenset({"integrator"})  # stored only as a digest


def test_an_unknown_token_is_refused(tokens_file: Path):
    with pytest.raises(InvalidToken, match="unknown token"):
        StaticTokens(str(tokens_file)).verify(AGENT_TOKEN + "x")


def test_a_rewritten_token_file_is_picked_up_and_a_broken_one_keeps_the_last_good(tokens_file: Path):
    tokens = StaticTokens(str(tokens_file))
    write_tokens(tokens_file, [{"subject": "ivr", "roles": ["integrator"], "token": IVR_TOKEN}])
    with pytest.raises(InvalidToken):
        tokens.verify(AGENT_TOKEN)  # revoked
    assert tokens.verify(IVR_TOKEN).subject == "ivr"
    tokens_file.write_text("{ half written")
    os.utime(tokens_file, ns=(time.time_ns() + 10**10, time.time_ns() + 10**10))
    assert tokens.verify(IVR_TOKEN).subject == "ivr"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"subject": "x", "roles": ["agent"], "token": "short"}], "at least 32"),
        ([{"subject": "x", "roles": ["agent"]}], "exactly one of token or sha256"),
        ([{"subject": "x", "roles": ["agent"], "token": AGENT_TOKEN, "sha256": "0" * 64}], "exactly one"),
        ([{"subject": "x", "roles": ["agent"], "sha256": "xyz"}], "64 hex digits"),
        ([{"subject": "", "roles": ["agent"], "token": AGENT_TOKEN}], "subject is required"),
        ([{"subject": "x", "roles": [], "token": AGENT_TOKEN}], "at least one role"),
        ([{"subject": "x", "roles": ["Agent!"], "token": AGENT_TOKEN}], "invalid role names"),
        (
            [
                {"subject": "x", "roles": ["agent"], "token": AGENT_TOKEN},
                {"subject": "y", "roles": ["admin"], "sha256": token_digest(AGENT_TOKEN)},
            ],
            "appears twice",
        ),
    ],
)
def test_a_bad_token_file_names_the_entry(entries: list, message: str):
    with pytest.raises(ValueError, match=message):
        parse_token_file(json.dumps({"tokens": entries}).encode())


def test_a_token_file_that_is_not_json_is_refused_at_start(tmp_path: Path):
    path = tmp_path / "t.json"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="not JSON"):
        StaticTokens(str(path))


# -- JWT -------------------------------------------------------------------------------------


def hs256(tmp_path: Path, **options) -> JwtVerifier:
    key = tmp_path / "hs.key"
    key.write_bytes(SECRET + b"\n")
    return JwtVerifier("HS256", str(key), **options)


def test_an_hs256_token_signed_with_the_shared_secret_is_accepted(tmp_path: Path):
    principal = hs256(tmp_path).verify(jwt.encode(claims(roles=["agent", "supervisor"]), SECRET, "HS256"))
    assert (principal.subject, principal.roles, principal.source) == ("ana", {"agent", "supervisor"}, "jwt")
    assert hs256(tmp_path).verify(forge_hs256(claims(), SECRET)).subject == "ana"  # the forging helper is sound


def test_roles_may_be_a_space_separated_claim_of_any_name(tmp_path: Path):
    verifier = hs256(tmp_path, roles_claim="rapport_roles")
    token = jwt.encode(claims(rapport_roles="agent integrator"), SECRET, "HS256")
    assert verifier.verify(token).roles == {"agent", "integrator"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"exp": None}, "lacks the exp claim"),
        ({"sub": None}, "lacks the sub claim"),
        ({"roles": [1, 2]}, "not a list of role names"),
    ],
)
def test_tokens_with_bad_claims_are_refused_with_the_reason(tmp_path: Path, payload: dict, reason: str):
    body = {k: v for k, v in claims(**payload).items() if v is not None}
    with pytest.raises(InvalidToken, match=reason):
        hs256(tmp_path).verify(jwt.encode(body, SECRET, "HS256"))


def test_issuer_and_audience_are_checked_when_configured(tmp_path: Path):
    verifier = hs256(tmp_path, issuer="https://idp.example", audience="rapport")
    good = claims(iss="https://idp.example", aud="rapport")
    assert verifier.verify(jwt.encode(good, SECRET, "HS256")).subject == "ana"
    with pytest.raises(InvalidToken, match="another audience"):
        verifier.verify(jwt.encode({**good, "aud": "billing"}, SECRET, "HS256"))
    with pytest.raises(InvalidToken, match="untrusted issuer"):
        verifier.verify(jwt.encode({**good, "iss": "https://evil.example"}, SECRET, "HS256"))
    with pytest.raises(InvalidToken, match="lacks the aud claim"):
        verifier.verify(jwt.encode({k: v for k, v in good.items() if k != "aud"}, SECRET, "HS256"))


def test_a_token_signed_with_another_secret_is_invalid(tmp_path: Path):
    with pytest.raises(InvalidToken, match="invalid token"):
        hs256(tmp_path).verify(jwt.encode(claims(), b"x" * 48, "HS256"))


def test_an_unsigned_alg_none_token_is_invalid(tmp_path: Path):
    unsigned = jwt.encode(claims(), "", algorithm="none")
    with pytest.raises(InvalidToken, match="invalid token"):
        hs256(tmp_path).verify(unsigned)


def test_rs256_verifies_with_the_public_key_and_refuses_the_hs256_key_confusion_attack(tmp_path: Path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "rs.pub"
    key_file.write_bytes(pem_public(private))
    verifier = JwtVerifier("RS256", str(key_file))
    assert verifier.verify(jwt.encode(claims(), private, "RS256")).subject == "ana"
    # The attacker signs HS256 with the (public) PEM as the secret, hoping the server uses it so.
    forged = forge_hs256(claims(roles=["admin"]), pem_public(private))
    with pytest.raises(InvalidToken, match="invalid token"):
        verifier.verify(forged)


def test_es256_verifies_with_a_p256_public_key_or_certificate(tmp_path: Path):
    from rapport.security.pki import CertificateAuthority

    private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "es.pub"
    key_file.write_bytes(pem_public(private))
    assert JwtVerifier("ES256", str(key_file)).verify(jwt.encode(claims(), private, "ES256")).subject == "ana"
    ca = CertificateAuthority.create()
    cert_file = tmp_path / "idp.crt"
    cert_file.write_bytes(ca.cert_pem)
    assert JwtVerifier("ES256", str(cert_file)).verify(jwt.encode(claims(), ca.key, "ES256")).subject == "ana"


@pytest.mark.parametrize(
    ("algorithm", "make_key", "message"),
    [
        ("HS256", lambda: b"too-short", "at least 32 bytes"),
        (
            "RS256",
            lambda: pem_public(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            "at least 2048 bits",
        ),
        ("RS256", lambda: pem_public(ec.generate_private_key(ec.SECP256R1())), "RSA public key"),
        ("ES256", lambda: pem_public(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        ("ES256", lambda: b"not a key", "not a PEM public key"),
        ("HS256", lambda: pem_public(ec.generate_private_key(ec.SECP256R1())), "not a PEM key"),
    ],
)
def test_weak_or_mismatched_keys_are_refused_at_start(algorithm: str, make_key, message: str):
    with pytest.raises(ValueError, match=message):
        parse_jwt_key(algorithm, make_key())


def test_a_rotated_key_file_takes_effect(tmp_path: Path):
    verifier = hs256(tmp_path)
    new_secret = b"n" * 40
    key = tmp_path / "hs.key"
    key.write_bytes(new_secret)
    stamp = time.time_ns() + 10**10
    os.utime(key, ns=(stamp, stamp))
    assert verifier.verify(jwt.encode(claims(), new_secret, "HS256")).subject == "ana"
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(claims(), SECRET, "HS256"))


# -- both sources ----------------------------------------------------------------------------


def test_tokens_are_routed_by_shape_and_oversized_ones_refused(tmp_path: Path, tokens_file: Path):
    verifiers = Verifiers(StaticTokens(str(tokens_file)), hs256(tmp_path))
    assert verifiers.verify(AGENT_TOKEN).source == "token"
    assert verifiers.verify(jwt.encode(claims(), SECRET, "HS256")).source == "jwt"
    with pytest.raises(InvalidToken, match="too long"):
        verifiers.verify("a" * 9000)
    only_static = Verifiers(StaticTokens(str(tokens_file)), None)
    with pytest.raises(InvalidToken):
        only_static.verify(jwt.encode(claims(), SECRET, "HS256"))


def test_settings_without_a_token_source_give_no_verifier(tmp_path: Path, tokens_file: Path):
    assert verifier_from_settings(AuthSettings()) is None
    verifiers = verifier_from_settings(AuthSettings(tokens_file=str(tokens_file)))
    assert verifiers is not None and list(verifiers.sources) == ["tokens"]
