"""The embedded Stripe emulator: localstripe, without its disk snapshot.

localstripe pickles its whole store to /tmp/localstripe.pickle after every write, so each
write costs more as the store grows (calls slowed from about 10 ms to over 250 ms after some
600 payments, the emulator's single event loop blocked meanwhile), and every emulator on the
machine overwrites the same file. We always start it from scratch, so the snapshot is never
read back: it is not written either.

It stands in for Stripe's servers, which run elsewhere: it runs at a lower CPU priority and
without a line per request, so on a small machine it does not take CPU from the system it
serves (shoppers' admissions wait for nothing the emulator does).

    python -m common.development.localstripe_server --port 8420
"""

from __future__ import annotations

import logging
import os
import sys

from localstripe import resources
from localstripe.server import start


def main() -> int | None:
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    os.nice(10)
    logging.getLogger("aiohttp.access").disabled = True
    if "--from-scratch" not in sys.argv:
        sys.argv.append("--from-scratch")
    return start()  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main())
