"""The drand beacon client (common/beacon/drand.py) and the embedded beacon
(common/development/drand_beacon.py), against real HTTP servers: real quicknet rounds verify and
tampered ones do not; the embedded beacon signs rounds drand's way (checked with drand-verify
and, independently, with py_ecc's pairing); a client believes no relay."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import drand_verify
import pytest
import requests

from common.beacon.drand import (
    BLS_SCHEME,
    QUICKNET,
    BeaconClient,
    BeaconInvalid,
    BeaconRound,
    BeaconUnavailable,
    Chain,
    chain_from_settings,
    client_from_settings,
    retry_delay,
    verify_round,
)
from common.development.drand_beacon import DST, ensure_beacon_key
from common.development.embedded import plan_services
from common.development.ports import free_port, wait_for_port
from common.platform.settings import PROJECT_ROOT, Settings, load_settings
from tests.conftest import RunningBeacon, RunningSystem, clean_environ

# Real quicknet rounds (round, signature, randomness), each as published by drand's relays:
QUICKNET_ROUNDS = [
    # noislabs/drand-verify's Python binding, README (github.com/mcdcam/python-drand-verify):
    # verify_quicknet(657413, ...) -> fc1873a1...
    (657413,
     "b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b",
     "fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587"),
    # ChainSafe/forest, src/beacon/tests/fixtures/drand_quicknet.json (rounds 1, 2 and 3 are also
    # in its src/beacon/signatures/tests.rs, from api.drand.sh/<quicknet>/public/<round>):
    (1,
     "b55e7cb2d5c613ee0b2e28d6750aabbb78c39dcc96bd9d38c2c2e12198df95571de8e8e402a0cc48871c7089a2b3af4b",
     "1466a6cd24e327188770752f6134001c64d6efcc590ccc26b721611ad96f165a"),
    (2,
     "b6b6a585449b66eb12e875b64fcbab3799861a00e4dbf092d99e969a5eac57dd3f798acf61e705fe4f093db926626807",
     "5782d6987841c654515a0e72b2d1ebb4e741234042c37cb19608ae50d93fb60c"),
    (3,
     "b3fab6df720b68cc47175f2c777e86d84187caab5770906f515ff1099cb01e4deaa027075d860823e49477b93c72bd64",
     "7ef4621ace1c6da4eb2eee7cd901f81385bca5b189771ec0f08d0d2566dd1a21"),
    (30662982,
     "8b3edd0d42a2fa36ac15641a2dea2e4f4895acec2ef72ef39e5b6138f0346fb6b046dde1b4b3d09ff5fe8a6a7acd674a",
     "ae76da5137c6d0a0d3b50d325948b26cc3ff1f804cd7bbca29b9250c2bfe8d67"),
]

# Another chain of the same scheme: drand/drand-client, test/beacon-verification.test.ts,
# "signatures on G1 with DST" (the `walkthrough` beacon).
WALKTHROUGH = Chain(
    chain_hash="af8b6fc95693b058a3a59efe586eb31c2c352fe00cf40c62a427d87c34f7a235",
    public_key=("81d320f220ee9c79e60e19dedc838c31e3ab919b15481e9feb52f643628c4f6a13fdc52129493875a818109d76"
                "7272ca0541cbcdcea9335f2870d781b39b845ba8cbd44fdfe4967781cf72ca5917fc9398bcf97ca0548ed5a709"
                "016c4b1ff0f3"),
    period_seconds=3, genesis_time=1687506816)
WALKTHROUGH_ROUND = (38,
                     "95c93585c513ebbcb4777ff15599b3140e5ec0295faa0e483f3deadd88fa6d43f0d3703e3a4ce106e8fd6c6987f32126",
                     "b2fc21325a24904a6a9e81a6c63f65f6cec3f0b2400df3f4a56b214770e9ccca")


# ------------------------------------------------------------------ verification


@pytest.mark.parametrize(("round_", "signature", "randomness"), QUICKNET_ROUNDS, ids=lambda v: str(v)[:10])
def test_real_quicknet_rounds_verify(round_: int, signature: str, randomness: str) -> None:
    assert verify_round(QUICKNET, round_, signature) == BeaconRound(round_, signature, randomness)
    # Hex case is the relay's business, not the round's.
    assert verify_round(QUICKNET, round_, signature.upper()).randomness == randomness


def test_another_chain_of_the_scheme_verifies_with_its_own_key_only() -> None:
    round_, signature, randomness = WALKTHROUGH_ROUND
    assert verify_round(WALKTHROUGH, round_, signature).randomness == randomness
    with pytest.raises(BeaconInvalid):
        verify_round(QUICKNET, round_, signature)


def test_a_signature_of_another_round_or_for_another_round_is_invalid() -> None:
    (round_a, signature_a, _), (round_b, _, _) = QUICKNET_ROUNDS[:2]
    with pytest.raises(BeaconInvalid, match=f"round {round_b}"):
        verify_round(QUICKNET, round_b, signature_a)  # a real signature, of another round
    with pytest.raises(BeaconInvalid):
        verify_round(QUICKNET, round_a + 1, signature_a)
    flipped = bytearray.fromhex(signature_a)
    flipped[20] ^= 1
    with pytest.raises(BeaconInvalid):
        verify_round(QUICKNET, round_a, flipped.hex())


@pytest.mark.parametrize("signature", [
    "zz" * 48,  # not hex (drand-verify would panic)
    "b7" * 47,  # too short
    "00" * 48,  # no compressed point
    "c0" + "00" * 47,  # the point at infinity
    "",
])
def test_a_malformed_signature_is_invalid_not_a_crash(signature: str) -> None:
    with pytest.raises(BeaconInvalid):
        verify_round(QUICKNET, 657413, signature)


@pytest.mark.parametrize("round_", [0, -1, 2**64, True])
def test_no_round_number_is_invalid(round_: int) -> None:
    with pytest.raises(BeaconInvalid):
        verify_round(QUICKNET, round_, QUICKNET_ROUNDS[0][1])
    with BeaconClient(QUICKNET, ["http://127.0.0.1:9"]) as client, pytest.raises(BeaconInvalid):
        client.fetch_round(round_)


@pytest.mark.parametrize("public_key", [
    "00" * 96,  # hex, but no G2 point: drand-verify panics (a BaseException) on it
    "c0" + "00" * 95,  # the point at infinity would accept the infinity signature
    "83cf" * 10,
])
def test_a_chain_whose_key_is_no_g2_point_verifies_nothing(public_key: str) -> None:
    chain = Chain(QUICKNET.chain_hash, public_key, 3, QUICKNET.genesis_time)
    with pytest.raises(BeaconInvalid, match="public key"):
        verify_round(chain, 657413, QUICKNET_ROUNDS[0][1])
    with pytest.raises(ValueError, match="public key"):
        BeaconClient(chain, ["http://127.0.0.1:9"])


# ------------------------------------------------------------------ round times


def test_round_times_of_quicknet() -> None:
    # Round 1 is genesis, 2023-08-23 15:09:27 UTC; one round every 3 s.
    assert QUICKNET.round_time(1) == 1692803367
    assert QUICKNET.round_time(2) == 1692803370
    assert QUICKNET.round_time(657413) == 1694775603  # 2023-09-15 11:00:03 UTC
    assert QUICKNET.round_time(30662982) == 1784792310  # 2026-07-23 07:38:30 UTC


@pytest.mark.parametrize(("at", "first"), [
    (0, 1),
    (1692803367 - 100, 1),
    (1692803367, 1),  # a time on a round's boundary names that round
    (1692803367.001, 2),
    (1692803369.999, 2),
    (1692803370, 2),
    (1694775603, 657413),
    (1694775602.5, 657413),
    (1694775603.000001, 657414),
    (1784792310, 30662982),
])
def test_first_round_at_or_after(at: float, first: int) -> None:
    assert QUICKNET.first_round_at_or_after(at) == first
    assert QUICKNET.round_time(first) >= at
    assert first == 1 or QUICKNET.round_time(first - 1) < at


def test_latest_round_at_and_public_form() -> None:
    assert QUICKNET.latest_round_at(1692803366) == 0
    assert QUICKNET.latest_round_at(1692803367) == 1
    assert QUICKNET.latest_round_at(1694775605.9) == 657413
    assert QUICKNET.as_public() == {
        "chain_hash": QUICKNET.chain_hash, "public_key": QUICKNET.public_key,
        "period_seconds": 3, "genesis_time": 1692803367}


def test_retry_delay_backs_off_to_ten_seconds() -> None:
    assert [retry_delay(attempt) for attempt in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]
    assert retry_delay(0) == 1 and retry_delay(100) == 10


# ------------------------------------------------------------------ settings


def test_settings_pin_quicknet_by_default_and_read_a_comma_list() -> None:
    settings = load_settings(drand_urls="https://api.drand.sh/, https://drand.cloudflare.com")
    assert settings.drand_urls == ["https://api.drand.sh", "https://drand.cloudflare.com"]
    assert chain_from_settings(settings) == QUICKNET
    with client_from_settings(settings) as client:  # type: ignore[union-attr]
        assert client.urls == settings.drand_urls and client.chain == QUICKNET
    assert client_from_settings(load_settings(drand_urls=[])) is None


def test_settings_read_drand_urls_from_the_environment() -> None:
    probe = ("from common.platform.settings import load_settings; "
             "print(load_settings().drand_urls)")
    env = {**clean_environ(), "DRAND_URLS": "http://127.0.0.1:1,https://api.drand.sh"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True).stdout
    assert out.strip() == "['http://127.0.0.1:1', 'https://api.drand.sh']"


# ------------------------------------------------------------------ the embedded beacon


def pairing_verifies(public_key_hex: str, round_: int, signature_hex: str) -> bool:
    """e(signature, G2) == e(H(sha256(round as 8 bytes)), public key), written from drand's
    scheme with py_ecc alone (pure Python, about 2 s)."""
    from py_ecc.bls.hash_to_curve import hash_to_G1
    from py_ecc.bls.point_compression import decompress_G1, decompress_G2
    from py_ecc.bls.typing import G1Compressed, G2Compressed
    from py_ecc.optimized_bls12_381 import G2, pairing

    key = bytes.fromhex(public_key_hex)
    public_key = decompress_G2(G2Compressed((int.from_bytes(key[:48], "big"),
                                             int.from_bytes(key[48:], "big"))))
    signature = decompress_G1(G1Compressed(int.from_bytes(bytes.fromhex(signature_hex), "big")))
    message = hash_to_G1(hashlib.sha256(round_.to_bytes(8, "big")).digest(), DST,
                         hashlib.sha256)  # type: ignore[arg-type]
    return bool(pairing(G2, signature) == pairing(public_key, message))


def test_the_embedded_beacon_serves_drand_info(beacon: RunningBeacon) -> None:
    for prefix in (f"/{beacon.chain.chain_hash}", ""):
        info = requests.get(f"{beacon.url}{prefix}/info", timeout=5).json()
        assert info["schemeID"] == BLS_SCHEME == "bls-unchained-g1-rfc9380"
        assert (info["hash"], info["public_key"], info["period"], info["genesis_time"]) == (
            beacon.chain.chain_hash, beacon.chain.public_key, 1, beacon.chain.genesis_time)
        assert len(info["groupHash"]) == 64 and info["metadata"]["beaconID"]
    assert requests.get(f"{beacon.url}/chains", timeout=5).json() == [beacon.chain.chain_hash]
    unknown = requests.get(f"{beacon.url}/{QUICKNET.chain_hash}/info", timeout=5)
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_the_embedded_beacon_answers_425_until_a_round_is_due(beacon: RunningBeacon) -> None:
    future = beacon.chain.first_round_at_or_after(time.time() + 3)
    early = requests.get(f"{beacon.url}/{beacon.chain.chain_hash}/public/{future}", timeout=5)
    assert early.status_code == 425 and str(beacon.chain.round_time(future)) in early.json()["error"]
    time.sleep(max(0.0, beacon.chain.round_time(future) - time.time()) + 0.05)
    on_time = requests.get(f"{beacon.url}/{beacon.chain.chain_hash}/public/{future}", timeout=5)
    assert on_time.status_code == 200 and on_time.json()["round"] == future


def test_a_round_of_the_embedded_beacon_verifies_two_ways(beacon: RunningBeacon) -> None:
    latest = requests.get(f"{beacon.url}/public/latest", timeout=5).json()
    round_ = latest["round"]
    assert round_ >= beacon.chain.latest_round_at(time.time()) - 1
    answer = requests.get(f"{beacon.url}/{beacon.chain.chain_hash}/public/{round_}", timeout=5).json()
    assert answer == latest  # signed once, kept
    assert drand_verify.verify_bls_unchained_g1_rfc9380(
        round_, answer["signature"], beacon.chain.public_key) == answer["randomness"]
    assert verify_round(beacon.chain, round_, answer["signature"]).randomness == answer["randomness"]
    assert answer["randomness"] == hashlib.sha256(bytes.fromhex(answer["signature"])).hexdigest()
    assert pairing_verifies(beacon.chain.public_key, round_, answer["signature"])
    assert not pairing_verifies(beacon.chain.public_key, round_ + 1, answer["signature"])


def test_the_beacon_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    before = int(time.time())
    chain = ensure_beacon_key(tmp_path / "drand", period_seconds=2)
    path = tmp_path / "drand" / "beacon.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert before <= chain.genesis_time <= time.time() and chain.period_seconds == 2
    assert ensure_beacon_key(tmp_path / "drand", period_seconds=5) == chain  # a restart: same chain
    assert ensure_beacon_key(tmp_path / "other") != chain
    assert [p.name for p in (tmp_path / "drand").iterdir()] == ["beacon.json"]


# ------------------------------------------------------------------ the client


class _Relay(BaseHTTPRequestHandler):
    """A relay that answers every round with whatever `answer(round)` says."""

    server: _RelayServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        round_ = int(self.path.rsplit("/", 1)[1])
        data = json.dumps(self.server.answer(round_)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


class _RelayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.answer = answer
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Relay)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def relay(answer) -> Iterator[_RelayServer]:  # type: ignore[no-untyped-def]
    server = _RelayServer(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for_round(beacon: RunningBeacon, round_: int) -> None:
    time.sleep(max(0.0, beacon.chain.round_time(round_) - time.time()))


def test_a_lying_relay_is_skipped_and_logged(beacon: RunningBeacon, caplog: pytest.LogCaptureFixture) -> None:
    wait_for_round(beacon, 3)
    round_ = beacon.chain.latest_round_at(time.time()) - 1
    truth = requests.get(f"{beacon.url}/public/{round_}", timeout=5).json()
    other = requests.get(f"{beacon.url}/public/{round_ - 1}", timeout=5).json()

    def lie(asked: int) -> dict:
        # A real signature of the same beacon, for the round before, with a randomness to match.
        return {"round": asked, "signature": other["signature"], "randomness": other["randomness"]}

    with relay(lie) as liar, relay(lambda asked: {**other, "round": other["round"]}) as off_by_one, \
            BeaconClient(beacon.chain, [liar.url, off_by_one.url, beacon.url], timeout_seconds=2) as client, \
            caplog.at_level(logging.WARNING, logger="common.beacon.drand"):
        got = client.fetch_round(round_)
    assert got == BeaconRound(round_, truth["signature"], truth["randomness"])
    assert liar.paths == [f"/{beacon.chain.chain_hash}/public/{round_}"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(liar.url in w and "wrong signature" in w for w in warnings), warnings
    assert any(off_by_one.url in w and f"round {round_ - 1}" in w for w in warnings), warnings


def test_the_randomness_is_recomputed_never_taken_from_the_relay(beacon: RunningBeacon) -> None:
    round_ = beacon.chain.latest_round_at(time.time())
    truth = requests.get(f"{beacon.url}/public/{round_}", timeout=5).json()
    with relay(lambda asked: {**truth, "randomness": "00" * 32}) as odd, \
            BeaconClient(beacon.chain, [odd.url]) as client:
        assert client.fetch_round(round_).randomness == truth["randomness"]


def test_every_relay_down_is_unavailable_quickly() -> None:
    refused = f"http://127.0.0.1:{free_port()}"  # nobody listens
    with socket.create_server(("127.0.0.1", 0), backlog=1) as silent:  # accepts, never answers
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with BeaconClient(QUICKNET, [refused, silent_url], timeout_seconds=0.3) as client, \
                pytest.raises(BeaconUnavailable) as unavailable:
            client.fetch_round(657413)
        assert time.monotonic() - started < 3
    message = str(unavailable.value)
    assert f"{refused}: unreachable" in message and f"{silent_url}: timeout" in message


def test_a_future_round_is_unavailable_without_asking_anyone(beacon: RunningBeacon) -> None:
    future = beacon.chain.first_round_at_or_after(time.time() + 30)
    due = beacon.chain.round_time(future)
    with relay(lambda asked: {}) as counted, BeaconClient(beacon.chain, [counted.url]) as client, \
            pytest.raises(BeaconUnavailable, match=f"round {future} is due at {due}"):
        client.fetch_round(future)
    assert counted.paths == []


def test_a_round_a_relay_has_not_produced_yet_is_unavailable(beacon: RunningBeacon) -> None:
    # The relay's clock is behind ours: it answers 425 for a round we think is due.
    behind = Chain(beacon.chain.chain_hash, beacon.chain.public_key, 1, beacon.chain.genesis_time - 30)
    round_ = behind.latest_round_at(time.time())
    with BeaconClient(behind, [beacon.url], timeout_seconds=2) as client, \
            pytest.raises(BeaconUnavailable, match="not yet produced"):
        client.fetch_round(round_)


def test_beacon_settings_give_a_client_of_the_beacon(
        beacon: RunningBeacon, beacon_settings: Settings, settings: Settings) -> None:
    assert client_from_settings(settings) is None  # the default test settings have no beacon
    assert chain_from_settings(beacon_settings) == beacon.chain
    with client_from_settings(beacon_settings) as client:  # type: ignore[union-attr]
        round_ = beacon.chain.latest_round_at(time.time())
        assert client.fetch_round(round_).round == round_


# ------------------------------------------------------------------ flashsale run's wiring


def test_flashsale_run_embeds_a_beacon_outside_production_only(tmp_path: Path) -> None:
    plan = plan_services({}, var_dir=tmp_path)
    chain = ensure_beacon_key(tmp_path / "drand")
    assert "drand" in plan.embedded and plan.env["DRAND_URLS"].startswith("http://127.0.0.1:")
    planned = [plan.env[f"DRAND_{name}"]
               for name in ("CHAIN_HASH", "PUBLIC_KEY", "PERIOD_SECONDS", "GENESIS_TIME")]
    assert planned == [chain.chain_hash, chain.public_key, "3", str(chain.genesis_time)]
    assert "drand" not in plan_services({}, var_dir=tmp_path, production=True).embedded
    configured = plan_services({"DRAND_URLS": "https://api.drand.sh"}, var_dir=tmp_path)
    assert "drand" not in configured.embedded and "DRAND_CHAIN_HASH" not in configured.env


def test_flashsale_embedded_drand_serves_the_planned_chain(tmp_path: Path) -> None:
    plan = plan_services({}, var_dir=tmp_path)
    env = {**clean_environ(), **{k: v for k, v in plan.env.items() if k.startswith("DRAND_")},
           "VAR_DIR": str(tmp_path), "PATH": os.environ.get("PATH", "")}
    url = plan.env["DRAND_URLS"]
    port = int(url.rsplit(":", 1)[1])
    with (tmp_path / "drand.log").open("wb") as log:
        process = subprocess.Popen([str(Path(sys.executable).parent / "flashsale"), "embedded", "drand"],
                                   env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30), (tmp_path / "drand.log").read_text()
        info = requests.get(f"{url}/info", timeout=5).json()
        assert info["hash"] == plan.env["DRAND_CHAIN_HASH"]
        chain = load_settings(drand_chain_hash=info["hash"], drand_public_key=info["public_key"],
                              drand_period_seconds=info["period"], drand_genesis_time=info["genesis_time"])
        with BeaconClient(chain_from_settings(chain), [url]) as client:
            assert client.fetch_round(1).round == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_flashsale_run_starts_its_beacon_and_names_it_in_services_json(system: RunningSystem) -> None:
    assert "drand" in system.services["embedded"]
    url = system.services["drand"]
    chain = ensure_beacon_key(system.var_dir / "drand")  # the key flashsale run made
    assert requests.get(f"{url}/{chain.chain_hash}/info", timeout=5).json()["public_key"] == chain.public_key
    with BeaconClient(chain, [url]) as client:
        round_ = chain.latest_round_at(time.time())
        assert client.fetch_round(round_).round == round_
