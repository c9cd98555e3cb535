"""Drive a running `vidrefine serve` from a script: upload a clip, refine it, download it.

    python examples/web_client.py URL CLIP "A long, detailed caption ..."

The five lines in `refine` are the whole API use (docs/web.md); each `predict` calls one of
the page's named endpoints, and `/result` waits for the job, then downloads the refined file.
"""

from __future__ import annotations

import sys

USAGE = 'python examples/web_client.py URL CLIP "CAPTION"'


def refine(url: str, clip: str, caption: str) -> str:
    """Upload, queue, wait and download; the path of the downloaded file."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    uploaded = client.predict(handle_file(clip), api_name="/upload")[0]
    job = client.predict(uploaded, caption, api_name="/refine")
    return client.predict(job, api_name="/result")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    print(refine(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
