#!/usr/bin/env python3
"""Write not-jsonl.bin: 4096 deterministic pseudo-random bytes (not JSON Lines).

Usage: python data-fixtures/malformed/make_binary.py [--output PATH]
"""

import argparse
import os
import random

SEED = 20251027
SIZE = 4096


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=os.path.join(here, "not-jsonl.bin"))
    args = ap.parse_args()
    data = random.Random(SEED).randbytes(SIZE)
    with open(args.output, "wb") as fh:
        fh.write(data)


if __name__ == "__main__":
    main()
