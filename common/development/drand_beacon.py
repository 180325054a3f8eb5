"""The embedded drand beacon: a real HTTP server on drand's relay paths, signing rounds of its
own chain (scheme `bls-unchained-g1-rfc9380`, as League of Entropy quicknet) with a key kept
in var/drand/beacon.json.

`flashsale run` starts it (Procfile `drand`) and points DRAND_URLS and the pinned chain at it,
so a sale's draw in development waits for, fetches and verifies a round exactly as against
quicknet. A round is signed on demand once its time has come (py_ecc, about 5 ms) and kept; a
future round answers 425 Too Early, like drand's relays. The product only speaks HTTP to it.

    python -m common.development.drand_beacon --url http://127.0.0.1:8090 --state-dir var/drand
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from py_ecc.bls.hash_to_curve import hash_to_G1
from py_ecc.bls.point_compression import compress_G1, compress_G2
from py_ecc.optimized_bls12_381 import G2, curve_order, multiply

from common.beacon.drand import BLS_SCHEME, Chain
from common.platform.files import create_private

# RFC 9380's suite for signatures on G1, as quicknet uses.
DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
BEACON_ID = "flashsale-dev"
KEY_FILE = "beacon.json"
CACHED_ROUNDS = 10_000


def _public_key_hex(secret_key: int) -> str:
    x, y = compress_G2(multiply(G2, secret_key))
    return (x.to_bytes(48, "big") + y.to_bytes(48, "big")).hex()


def _chain_hash(public_key: str, period_seconds: int, genesis_time: int) -> str:
    # Only an identifier (drand hashes its own binary encoding of the same facts).
    canonical = json.dumps({"public_key": public_key, "period": period_seconds,
                            "genesis_time": genesis_time, "schemeID": BLS_SCHEME,
                            "beaconID": BEACON_ID}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read_key(path: Path) -> tuple[int, Chain]:
    stored = json.loads(path.read_text())
    secret_key = int(stored["secret_key"], 16)
    period, genesis = int(stored["period_seconds"]), int(stored["genesis_time"])
    public_key = _public_key_hex(secret_key)
    return secret_key, Chain(chain_hash=_chain_hash(public_key, period, genesis),
                             public_key=public_key, period_seconds=period, genesis_time=genesis)


def ensure_beacon_key(state_dir: Path, period_seconds: int = 3) -> Chain:
    """The embedded beacon's chain, its key created once into `state_dir/beacon.json` (mode
    0600) with genesis now; later calls, and restarts, return the same chain (the period given
    then is ignored)."""
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        stored = {"secret_key": f"{secrets.randbelow(curve_order - 1) + 1:064x}",
                  "period_seconds": period_seconds, "genesis_time": int(time.time()),
                  "scheme": BLS_SCHEME}
        candidate = path.with_name(f".{KEY_FILE}.{secrets.token_hex(4)}")
        create_private(candidate, json.dumps(stored, indent=2) + "\n")
        try:
            # link() never overwrites: when two processes race, the first key wins whole.
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    return _read_key(path)[1]


class Beacon:
    """Signs the rounds of one chain, each once (thread-safe)."""

    def __init__(self, state_dir: Path, period_seconds: int = 3) -> None:
        ensure_beacon_key(state_dir, period_seconds)
        self._secret_key, self.chain = _read_key(state_dir / KEY_FILE)
        self._signatures: dict[int, str] = {}
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """drand's /info answer."""
        return {"public_key": self.chain.public_key, "period": self.chain.period_seconds,
                "genesis_time": self.chain.genesis_time, "hash": self.chain.chain_hash,
                "groupHash": hashlib.sha256(bytes.fromhex(self.chain.public_key)).hexdigest(),
                "schemeID": BLS_SCHEME, "metadata": {"beaconID": BEACON_ID}}

    def signature(self, round: int) -> str:
        with self._lock:
            cached = self._signatures.get(round)
        if cached is None:
            message = hashlib.sha256(round.to_bytes(8, "big")).digest()
            point = multiply(hash_to_G1(message, DST, hashlib.sha256), self._secret_key)  # type: ignore[arg-type]
            cached = compress_G1(point).to_bytes(48, "big").hex()
            with self._lock:
                if len(self._signatures) >= CACHED_ROUNDS:
                    self._signatures.clear()
                self._signatures[round] = cached
        return cached

    def public_round(self, round: int) -> dict[str, Any]:
        """drand's /public/<round> answer (the caller checks the round is due)."""
        signature = self.signature(round)
        return {"round": round, "randomness": hashlib.sha256(bytes.fromhex(signature)).hexdigest(),
                "signature": signature}


_PATH = re.compile(r"^(?:/(?P<hash>[0-9a-f]{64}))?/(?P<what>info|health|public/(?P<round>latest|\d{1,20}))$")


class _Handler(BaseHTTPRequestHandler):
    server: _BeaconServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        beacon = self.server.beacon
        if self.path == "/chains":
            return self._json(HTTPStatus.OK, [beacon.chain.chain_hash])
        match = _PATH.match(urlsplit(self.path).path)
        if not match:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        if match["hash"] and match["hash"] != beacon.chain.chain_hash:
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"unknown chain {match['hash']}"})
        latest = beacon.chain.latest_round_at(time.time())
        if match["what"] == "info":
            return self._json(HTTPStatus.OK, beacon.info())
        if match["what"] == "health":
            return self._json(HTTPStatus.OK, {"current": latest, "expected": latest})
        asked = match["round"]
        # drand reads round 0 as the latest, too.
        round = latest if asked == "latest" or int(asked) == 0 else int(asked)
        if round == 0 or round > latest:
            due = beacon.chain.round_time(max(round, 1))
            return self._json(HTTPStatus.TOO_EARLY,
                              {"error": f"round {asked} is not produced yet: due at {due}"})
        return self._json(HTTPStatus.OK, beacon.public_round(round))

    def _json(self, status: HTTPStatus, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A served round is routine; only what went wrong reaches `flashsale run`'s output.
        if not str(code).startswith("2"):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"drand: {self.address_string()} {format % args}\n")


class _BeaconServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], beacon: Beacon) -> None:
        self.beacon = beacon
        super().__init__(address, _Handler)


def serve(host: str, port: int, state_dir: Path, period_seconds: int = 3) -> None:
    """Answer on host:port until SIGTERM or SIGINT."""
    beacon = Beacon(state_dir, period_seconds)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with _BeaconServer((host, port), beacon) as server:
        thread = threading.Thread(target=server.serve_forever, name="drand-http", daemon=True)
        thread.start()
        sys.stderr.write(f"drand: chain {beacon.chain.chain_hash} on http://{host}:{port}\n")
        stopped.wait()
        server.shutdown()


def beacon_command(url: str, state_dir: Path, period_seconds: int | None = None) -> list[str]:
    """The argv that runs the beacon for DRAND_URLS (http://host:port)."""
    argv = [sys.executable, "-m", "common.development.drand_beacon", "--url", url,
            "--state-dir", str(state_dir)]
    return argv + (["--period", str(period_seconds)] if period_seconds else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="http://host:port to listen on")
    parser.add_argument("--state-dir", type=Path, required=True, help="where beacon.json (the key) is kept")
    parser.add_argument("--period", type=int, default=3, help="seconds between rounds (at key creation)")
    args = parser.parse_args()
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname or not url.port:
        parser.error(f"--url {args.url}: expected http://host:port")
    serve(url.hostname, url.port, args.state_dir, args.period)


if __name__ == "__main__":
    main()
