"""Recognition-server benchmark: ``python benchmarks/bench_server.py [--out FILE]``.

The same as ``faceobf bench server``; all the work is in
:func:`faceobfuscator.research.bench.server.run_server_bench`.
"""

from __future__ import annotations

import sys

from faceobfuscator.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "server", *sys.argv[1:]]))
