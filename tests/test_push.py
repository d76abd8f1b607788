"""Signed gallery pushes: accepted only when signed, targeted, new and well-formed; everything
else rejected with a reason and the current gallery untouched (including fuzzed payloads)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from embeddings import unit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeface.recognition.gallery import Gallery, encode_embedding
from edgeface.recognition.push import (
    MAX_VERSION,
    PushRejected,
    apply_push,
    full_push,
    generate_ed25519,
    generate_key,
    sign,
    sign_ed25519,
    verify_push,
)

KEY = generate_key()
KEYS = {"k1": KEY}


def gallery_of(*names: str) -> Gallery:
    gallery = Gallery(version=3, embedder="abc")
    for i, name in enumerate(names):
        gallery.add(name, unit(i))
    return gallery


def signed(document: dict[str, object], key: str = KEY, key_id: str = "k1") -> bytes:
    return json.dumps(sign(document, key, key_id)).encode()


def verify(raw: bytes, current: int = 3, device: str = "front", groups=("office",)):  # type: ignore[no-untyped-def]
    return verify_push(raw, KEYS, device, tuple(groups), current)


def test_full_push_round_trip() -> None:
    new = gallery_of("alice", "bob")
    raw = signed(full_push(new, 4, {"device": "front"}, time.time()))
    document = verify(raw)
    result = apply_push(gallery_of("carol"), document)
    assert sorted(result.identities) == ["alice", "bob"] and result.version == 4
    assert np.allclose(result.identities["alice"].embeddings[0], unit(0))


def delta_of(
    version: int,
    add: dict[str, int],
    remove: list[str],
    target: dict[str, str],
    base_version: int = 3,
) -> dict[str, object]:
    """A delta push adding each name with the unit embedding of its seed, to the gallery at
    ``base_version`` (that of :func:`gallery_of`)."""
    return {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": version,
        "base_version": base_version,
        "target": target,
        "issued_at": time.time(),
        "add": {name: {"embeddings": [encode_embedding(unit(seed))]} for name, seed in add.items()},
        "remove": remove,
    }


def test_group_push_and_delta() -> None:
    current = gallery_of("alice", "bob")
    delta = delta_of(9, {"carol": 7}, ["bob"], {"group": "office"})
    result = apply_push(current, verify(signed(delta)))
    assert sorted(result.identities) == ["alice", "carol"] and result.version == 9
    assert sorted(current.identities) == ["alice", "bob"]  # the current gallery is untouched


def test_a_delta_applies_only_to_the_gallery_version_it_was_made_for() -> None:
    """A door that missed version 4 (which removed bob) must not apply delta 5, made for
    version 4, on top of version 3: bob would stay admitted. It asks for a full push."""
    current = gallery_of("alice", "bob")  # version 3
    missed = delta_of(5, {"carol": 7}, [], {"device": "front"}, base_version=4)
    with pytest.raises(PushRejected, match="changes gallery version 4, this door has version 3"):
        apply_push(current, verify(signed(missed)))
    unnamed = {k: v for k, v in missed.items() if k != "base_version"}
    with pytest.raises(PushRejected, match="must name the gallery version it changes"):
        apply_push(current, verify(signed(unnamed)))
    for wrong in ("3", True, None):
        with pytest.raises(PushRejected, match="must name the gallery version"):
            apply_push(current, verify(signed({**missed, "base_version": wrong})))


def test_a_version_past_what_json_readers_hold_exactly_is_refused() -> None:
    for version in (MAX_VERSION + 1, 10**4000):
        with pytest.raises(PushRejected, match="version must be an integer of at most"):
            verify(signed(base_document(version)))
    assert verify(signed(base_document(MAX_VERSION)))["version"] == MAX_VERSION


def test_a_full_push_may_not_hold_a_person_without_embeddings() -> None:
    document = base_document()
    document["gallery"]["identities"]["bob"] = {"embeddings": []}  # type: ignore[index]
    with pytest.raises(PushRejected, match="identity 'bob' has no embeddings"):
        apply_push(gallery_of("carol"), verify(signed(document)))


def test_payloads_that_break_the_parser_or_the_encoder_are_rejected_not_raised() -> None:
    """Before any signature is checked: JSON nested deeper than the parser's recursion limit,
    and text with a lone UTF-16 surrogate (valid JSON, not encodable as UTF-8, so it cannot be
    the signer's canonical form) naming a key id the door holds. Both used to escape as
    RecursionError / UnicodeEncodeError and end the daemon's push handling."""
    deep = b'{"format": "edgeface-gallery-push", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(PushRejected, match="nested too deeply"):
        verify(deep)
    document = sign(base_document(), KEY, "k1")
    raw = json.dumps({**document, "note": "SURROGATE"}).encode().replace(b"SURROGATE", b"\\ud800")
    with pytest.raises(PushRejected, match="not valid Unicode"):
        verify(raw)


def test_embeddings_from_another_embedder_model_are_refused() -> None:
    """A gallery enrolled with another model (here the fp32 embedder's hash, while the door
    runs "int8-hash") must not be compared with the door's embeddings: a full push naming it,
    or a delta saying so, is refused; pushes naming the door's model, or none, are applied."""
    door = "int8-hash"
    other = gallery_of("alice")
    other.embedder = "fp32-hash"
    full = verify(signed(full_push(other, 4, {"device": "front"}, time.time())))
    with pytest.raises(PushRejected, match=r"embedder fp32-hash.*this door runs int8-hash"):
        apply_push(gallery_of("carol"), full, embedder=door)
    other.embedder = door
    same = verify(signed(full_push(other, 4, {"device": "front"}, time.time())))
    assert sorted(apply_push(gallery_of("carol"), same, embedder=door).identities) == ["alice"]
    delta = delta_of(5, {"dave": 9}, [], {"device": "front"})
    result = apply_push(gallery_of("carol"), verify(signed(delta)), embedder=door)
    assert sorted(result.identities) == ["carol", "dave"] and result.embedder == door
    with pytest.raises(PushRejected, match="embedder fp32-hash"):
        apply_push(
            gallery_of("carol"),
            verify(signed({**delta, "embedder": "fp32-hash"})),
            embedder=door,
        )


def base_document(version: int = 4) -> dict[str, object]:
    return full_push(gallery_of("alice"), version, {"device": "front"}, 1.0)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: json.dumps(base_document()).encode(), "unsigned push"),
        (lambda: signed(base_document(), key=generate_key()), "bad signature"),
        (lambda: signed(base_document(), key_id="k9"), "unknown signing key"),
        (lambda: signed(base_document(version=3)), "stale or replayed"),
        (lambda: signed(base_document(version=2)), "stale or replayed"),
        (lambda: signed({**base_document(), "target": {"device": "back"}}), "not device"),
        (lambda: signed({**base_document(), "target": {"group": "lab"}}), "not device"),
        (lambda: b"{not json", "not valid JSON"),
        (lambda: b"x" * (4 * 1024 * 1024 + 1), "too large"),
        (lambda: signed({**base_document(), "version": "5"}), "version must be an integer"),
        (lambda: signed({**base_document(), "format": "other"}), "not an edgeface-gallery-push"),
    ],
)
def test_rejections_say_why(make, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PushRejected, match=reason):
        verify(make())


def test_tampering_after_signing_is_detected() -> None:
    document = sign(base_document(), KEY, "k1")
    document["gallery"]["identities"]["mallory"] = document["gallery"]["identities"]["alice"]  # type: ignore[index]
    with pytest.raises(PushRejected, match="bad signature"):
        verify(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("embedding", "reason"),
    [
        (base64.b64encode(np.ones(64, "<f4").tobytes()).decode(), "64 values, expected 128"),
        (base64.b64encode(np.ones(128, "<f4").tobytes()).decode(), "not L2-normalised"),
        ("@@not-base64@@", "not valid base64"),
    ],
)
def test_signed_but_invalid_embeddings_are_refused(embedding: str, reason: str) -> None:
    document = base_document()
    document["gallery"]["identities"]["alice"]["embeddings"] = [embedding]  # type: ignore[index]
    with pytest.raises(PushRejected, match=reason):
        apply_push(gallery_of("carol"), verify(signed(document)))


def test_a_replayed_push_is_refused_after_it_was_applied() -> None:
    raw = signed(base_document(version=5))
    applied = apply_push(gallery_of("carol"), verify(raw))
    with pytest.raises(PushRejected, match="stale or replayed"):
        verify(raw, current=applied.version)


VALID = signed(base_document())


def check_never_crashes(raw: bytes) -> None:
    current = gallery_of("carol")
    before = json.dumps(current.to_dict(), sort_keys=True)
    try:
        result = apply_push(current, verify(raw))
    except PushRejected as exc:
        assert exc.reason
    else:
        assert all(len(i.embeddings) for i in result.identities.values())
    assert json.dumps(current.to_dict(), sort_keys=True) == before


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_bytes_of_a_signed_push(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    check_never_crashes(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["full", "delta", "other"]),
    version=st.integers(-2, 10) | st.text(max_size=3),
    base=st.just(3) | json_values,
    gallery=json_values,
    add=json_values,
    remove=json_values,
)
def test_correctly_signed_garbage_never_crashes(kind, version, base, gallery, add, remove) -> None:  # type: ignore[no-untyped-def]
    document = {
        "format": "edgeface-gallery-push",
        "kind": kind,
        "version": version,
        "base_version": base,
        "target": {"device": "front"},
        "issued_at": 0,
        "gallery": gallery,
        "add": add,
        "remove": remove,
    }
    check_never_crashes(signed(document))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    images=json_values
    | st.lists(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()), max_size=4)
)
def test_correctly_signed_garbage_images_never_crash(images) -> None:  # type: ignore[no-untyped-def]
    """Photo pushes: whatever ``images`` holds, a reason per image or for the push, never a
    crash, never a partial change (a real enroller; random bytes never reach the models)."""
    from edgeface.pipeline import FacePipeline
    from edgeface.recognition.enrolment import ImageEnroller

    document = {
        **base_document(),
        "kind": "delta",
        "base_version": 3,
        "add": {"dave": {"images": images}},
    }
    current = gallery_of("carol")
    before = json.dumps(current.to_dict(), sort_keys=True)
    enroller = ImageEnroller(FacePipeline)
    try:
        result = apply_push(current, verify(signed(document)), enrol_images=enroller)
    except PushRejected as exc:
        assert exc.reason
    else:
        assert len(result.identities["dave"].embeddings) >= 1
    assert all(r["reason"] for r in enroller.results if r["status"] == "rejected")
    assert json.dumps(current.to_dict(), sort_keys=True) == before


ED25519_PRIVATE, ED25519_PUBLIC = generate_ed25519()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_bytes_of_an_ed25519_push(data: st.DataObject) -> None:
    """Every mutation of an Ed25519-signed push is rejected with a reason (or, if it left the
    signed bytes intact, applied) — never a crash or a partial change."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(ED25519_PRIVATE, password=None)
    raw = bytearray(json.dumps(sign_ed25519(base_document(), private, "k2")).encode())  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    current = gallery_of("carol")
    before = json.dumps(current.to_dict(), sort_keys=True)
    try:
        document = verify_push(bytes(raw), KEYS, "front", ("office",), 3, {"k2": ED25519_PUBLIC})
        apply_push(current, document)
    except PushRejected as exc:
        assert exc.reason
    assert json.dumps(current.to_dict(), sort_keys=True) == before


def test_cli_keys_export_import_diff(tmp_path, photo_dir) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat
    import subprocess
    import sys

    def edgeface(*args: str, gallery: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeface", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "EDGEFACE_GALLERY": gallery},
        )

    key = tmp_path / "keys" / "k1.key"
    assert edgeface("keys", "generate", "--out", str(key), gallery="-").returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    assert (
        edgeface("keys", "generate", "--out", str(key), gallery="-").returncode == 2
    )  # no clobber

    first, second = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    assert edgeface("enroll", "obama", str(photo_dir / "obama.jpg"), gallery=first).returncode == 0
    exported = tmp_path / "export.json"
    assert edgeface("gallery", "export", "--out", str(exported), gallery=first).returncode == 0
    assert edgeface("gallery", "import", str(exported), gallery=second).returncode == 0
    same = edgeface("gallery", "diff", first, "--json", gallery=second)
    assert same.returncode == 0 and json.loads(same.stdout) == {
        "added": [],
        "removed": [],
        "changed": [],
    }
    assert edgeface("enroll", "biden", str(photo_dir / "biden.jpg"), gallery=second).returncode == 0
    differs = edgeface("gallery", "diff", second, "--json", gallery=first)
    assert differs.returncode == 1 and json.loads(differs.stdout)["added"] == ["biden"]
    broken = tmp_path / "broken.json"
    broken.write_text(
        '{"format": "edgeface-gallery", "version": 1, "embedding_dim": 128,\n "identities": 5}'
    )
    refused = edgeface("gallery", "import", str(broken), gallery=second)
    assert refused.returncode == 2 and "identities must be a mapping" in refused.stderr

    # Rollback: the gallery before biden's enrolment comes back, as a newer version, even
    # after the current file was destroyed (kept aside as .corrupt).
    versions = json.loads(Path(second).read_text())["version"]
    Path(second).write_text('{"format": "edgeface-gallery", "vers')  # torn by something
    rolled = edgeface("gallery", "rollback", "--json", gallery=second)
    assert rolled.returncode == 0, rolled.stderr
    report = json.loads(rolled.stdout)
    assert report == {"restored_from_version": versions - 1, "gallery_version": versions}
    listed = edgeface("gallery", "list", "--json", gallery=second)
    assert [r["name"] for r in json.loads(listed.stdout)["identities"]] == ["obama"]
    assert Path(second + ".corrupt").read_text().endswith('"vers')
    # With a readable current file, rolling back twice undoes the rollback.
    edgeface("enroll", "biden", str(photo_dir / "biden.jpg"), gallery=second)
    edgeface("gallery", "rollback", gallery=second)
    edgeface("gallery", "rollback", gallery=second)
    listed = edgeface("gallery", "list", "--json", gallery=second)
    assert [r["name"] for r in json.loads(listed.stdout)["identities"]] == ["biden", "obama"]
    assert json.loads(listed.stdout)["version"] == versions + 3
    assert edgeface("gallery", "rollback", gallery=str(tmp_path / "new.json")).returncode == 2


def test_power_cut_during_gallery_writes_leaves_old_or_new_never_a_mix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A writer saving ever-larger galleries is SIGKILLed at random moments; every time, the
    file on disk loads and is one complete version (identity count = version)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import textwrap

    from edgeface.recognition.gallery import GalleryStore

    path = tmp_path / "gallery.json"
    writer = textwrap.dedent(f"""
        import numpy as np
        from edgeface.recognition.gallery import Gallery, GalleryStore
        store = GalleryStore({str(path)!r})
        rng = np.random.default_rng()
        while True:
            gallery = store.load()
            gallery.add(f"person{{len(gallery.identities)}}", rng.normal(size=128))
            store.save(gallery)          # version n holds n identities
            print(gallery.version, flush=True)
    """)
    chooser = random.Random(0)
    last_seen = 0
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()  # at least one save of this run completed
        time.sleep(chooser.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        gallery = GalleryStore(path).load()  # raises if the file were a mix or truncated
        assert len(gallery.identities) == gallery.version >= last_seen
        last_seen = gallery.version
    assert last_seen > 12


# ----- Ed25519 ---------------------------------------------------------------------------------


def ed25519_door(tmp_path):  # type: ignore[no-untyped-def]
    """A key pair made by the real CLI; the door holds only the public half."""
    from edgeface.cli import main

    pem = tmp_path / "k2.pem"
    assert main(["keys", "generate", "--type", "ed25519", "--id", "k2", "--out", str(pem)]) == 0
    assert pem.stat().st_mode & 0o777 == 0o600
    public = (tmp_path / "k2.pub").read_text().strip()
    return pem, {"k2": public}


def test_ed25519_push_verified_with_the_public_key_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgeface.recognition.push import load_signing_key

    pem, public_keys = ed25519_door(tmp_path)
    key = load_signing_key(pem)
    assert key.algorithm == "Ed25519"
    raw = json.dumps(key.sign(base_document(), "k2")).encode()
    document = verify_push(raw, {}, "front", ("office",), 3, public_keys)
    assert list(apply_push(gallery_of("bob"), document).identities) == ["alice"]
    # The HMAC key file still loads as an HMAC key.
    hmac_file = tmp_path / "k1.key"
    hmac_file.write_text(KEY + "\n")
    assert load_signing_key(hmac_file).algorithm == "HMAC-SHA256"


def test_ed25519_rejections_say_why(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgeface.recognition.push import generate_ed25519, load_signing_key, sign_ed25519

    pem, public_keys = ed25519_door(tmp_path)
    key = load_signing_key(pem)

    def check(raw: bytes, reason: str, keys: dict[str, str] = KEYS) -> None:
        with pytest.raises(PushRejected, match=reason):
            verify_push(raw, keys, "front", ("office",), 3, public_keys)

    good = key.sign(base_document(), "k2")
    tampered = {**good, "version": 9}
    check(json.dumps(tampered).encode(), "bad signature")
    other_pem, _ = generate_ed25519()
    (tmp_path / "other.pem").write_bytes(other_pem)
    forged = load_signing_key(tmp_path / "other.pem").sign(base_document(), "k2")
    check(json.dumps(forged).encode(), "bad signature")  # someone else's private key
    # Algorithm confusion: an HMAC signature naming the Ed25519 key id — e.g. made with the
    # public key text as the "secret" — and an Ed25519 claim naming the HMAC key.
    confused = sign(base_document(), public_keys["k2"].encode().hex(), "k2")
    check(json.dumps(confused).encode(), "key 'k2' is an Ed25519 key; the push claims HMAC")
    private = load_signing_key(tmp_path / "other.pem").secret
    claims_ed = sign_ed25519(base_document(), private, "k1")  # type: ignore[arg-type]
    check(json.dumps(claims_ed).encode(), "key 'k1' is an HMAC-SHA256 key; the push claims Ed")
    bad_value = {**good, "signature": {**good["signature"], "value": "!!"}}
    check(json.dumps(bad_value).encode(), "not base64")
    short = {**good, "signature": {**good["signature"], "value": "AAAA"}}
    check(json.dumps(short).encode(), "bad signature")


def test_key_files_and_config_errors_are_clear(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgeface.config import ConfigError, parse_config
    from edgeface.errors import EdgefaceError
    from edgeface.recognition.push import load_signing_key

    junk = tmp_path / "junk.key"
    junk.write_text("hello")
    with pytest.raises(EdgefaceError, match="neither a hex HMAC key nor an Ed25519"):
        load_signing_key(junk)
    with pytest.raises(EdgefaceError, match="cannot read key file"):
        load_signing_key(tmp_path / "missing.key")
    base = "mqtt:\n  enabled: true\npush:\n  enabled: true\n"
    with pytest.raises(ConfigError, match=r"push\.public_keys\.k2 is not an Ed25519 public key"):
        parse_config(base + "  public_keys:\n    k2: c2hvcnQ=\n")
    with pytest.raises(ConfigError, match=r"in both push\.keys and push\.public_keys"):
        parse_config(base + f"  keys:\n    k2: {KEY}\n  public_keys:\n    k2: {'A' * 43}=\n")
    _, public_keys = ed25519_door(tmp_path)
    config = parse_config(base + f'  public_keys:\n    k2: "{public_keys["k2"]}"\n')
    assert config.push.public_keys == public_keys and config.push.keys == {}


DAY = 86400.0


def aged(days: float, now: float) -> bytes:
    return signed(full_push(gallery_of("alice"), 4, {"device": "front"}, now - days * DAY))


@pytest.mark.parametrize(
    ("days_ago", "reason"),
    [
        (31, "push was signed 31.0 days ago, more than push.max_age_days (30.0 days)"),
        (-0.5, "push is dated 0.5 days in the future"),
    ],
)
def test_a_push_older_than_max_age_or_from_the_future_is_refused(
    days_ago: float, reason: str
) -> None:
    """An older signed push handed to a door that missed newer ones (offline) is newer than
    its gallery, so versions alone let it in; with push.max_age_days it is refused, saying by
    how much, as an authenticated refusal (reported, not throttled as junk)."""
    now = time.time()
    with pytest.raises(PushRejected) as refused:
        verify_push(aged(days_ago, now), KEYS, "front", (), 3, max_age=30 * DAY, now=now)
    assert refused.value.reason.startswith(reason) and refused.value.authenticated


def test_age_is_checked_only_when_asked_and_fresh_pushes_pass() -> None:
    now = time.time()
    old = aged(400, now)
    assert verify_push(old, KEYS, "front", (), 3, now=now)["version"] == 4  # max_age 0: any
    fresh = aged(29.9, now)
    assert verify_push(fresh, KEYS, "front", (), 3, max_age=30 * DAY, now=now)["version"] == 4
    slightly_ahead = aged(-0.02, now)  # half an hour: clocks differ a little
    assert verify_push(slightly_ahead, KEYS, "front", (), 3, max_age=DAY, now=now)


@pytest.mark.parametrize(
    "issued",
    [
        None,
        "yesterday",
        float("nan"),
        True,
        pytest.param(10**400, id="huge"),
        pytest.param(-(10**400), id="huge-negative"),
    ],
)
def test_max_age_needs_a_signed_issued_at(issued: object) -> None:
    """Not a time, or an integer too large for a float (JSON integers are unbounded): refused
    as a push without a time, not an OverflowError reported as an internal error."""
    document = full_push(gallery_of("alice"), 4, {"device": "front"}, 0.0)
    if issued is None:
        del document["issued_at"]
    else:
        document["issued_at"] = issued
    raw = json.dumps(sign(document, KEY, "k1")).encode()
    with pytest.raises(PushRejected, match="no issued_at time"):
        verify_push(raw, KEYS, "front", (), 3, max_age=DAY, now=time.time())
