"""Prints what a program sees of its start (tests/test_fork_server.py), then exits 3."""

import json
import os
import sys

print(
    json.dumps(
        [
            sys.argv,
            os.getcwd(),
            sys.path[0],
            os.environ.get("FORK_TEST"),
            sys.stdin.read(),
            __name__,
            "cnn_jax.main" in sys.modules,
        ]
    )
)
print("to stderr", file=sys.stderr)
sys.exit(3)
