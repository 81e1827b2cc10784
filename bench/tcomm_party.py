"""One party of the ``tcomm`` benchmark, run on its edge host: download the model, upload an update.

Its sockets are bound to the party's own address, so its traffic goes through
the party's own shaped class of the edge host's link.  Prints the two times as
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class _SourceAdapter(HTTPAdapter):
    """An adapter whose connections leave from one local address."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def main() -> None:
    """Parse the arguments, time the download and the upload, print them."""
    parser = argparse.ArgumentParser(prog="python -m bench.tcomm_party", description=__doc__)
    for name in ("--source", "--base", "--job", "--token", "--body"):
        parser.add_argument(name, required=True)
    parser.add_argument("--upload-only", action="store_true", help="Skip the model download.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds each call may take.")
    args = parser.parse_args()
    session = requests.Session()
    session.mount("http://", _SourceAdapter(args.source))
    auth = {"Authorization": f"Bearer {args.token}"}
    body = Path(args.body).read_bytes()
    started = time.perf_counter()
    if not args.upload_only:
        model = session.get(f"{args.base}/v1/jobs/{args.job}/model", headers=auth, timeout=args.timeout)
        model.raise_for_status()
    downloaded = time.perf_counter()
    sent = session.post(f"{args.base}/v1/jobs/{args.job}/rounds/1/updates", data=body, headers=auth,
                        timeout=args.timeout)
    sent.raise_for_status()
    uploaded = time.perf_counter()
    print(json.dumps({"download_s": downloaded - started, "upload_s": uploaded - downloaded}))


if __name__ == "__main__":
    main()
