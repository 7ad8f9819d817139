#!/usr/bin/env python3
"""Runs the access-control tests (test_*.py in this directory) against the broker on
$WARREN_PORT (default 5672), which must have been loaded with definitions.json.

Usage: run_all.py [-v] [--port N] [--shuffle [SEED]] [module ...]
  --shuffle: run the test cases in a random order (they must not depend on order)
Exit status: 0 if every test passed, 1 otherwise.
"""
import argparse
import glob
import os
import random
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--port", type=int)
    ap.add_argument("--shuffle", nargs="?", const=-1, type=int)
    ap.add_argument("modules", nargs="*")
    a = ap.parse_args()
    if a.port:
        os.environ["WARREN_PORT"] = str(a.port)
    sys.path.insert(0, HERE)
    mods = a.modules or sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    mods = [m[:-3] if m.endswith(".py") else m for m in mods]
    tests = list(flatten(unittest.defaultTestLoader.loadTestsFromNames(mods)))
    if a.shuffle is not None:
        seed = a.shuffle if a.shuffle >= 0 else random.randrange(1 << 30)
        print("shuffle seed", seed)
        random.Random(seed).shuffle(tests)
    res = unittest.TextTestRunner(verbosity=2 if a.v else 1).run(unittest.TestSuite(tests))
    print("access: %d/%d passed (%d skipped)" % (
        res.testsRun - len(res.failures) - len(res.errors), res.testsRun, len(res.skipped)))
    return 0 if res.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
