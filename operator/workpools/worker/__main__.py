"""`python -m workpools.worker --pool P ...`, the same as `workpools worker start`."""

import argparse
import sys

from workpools.worker.main import add_arguments, run_worker

parser = argparse.ArgumentParser(prog="python -m workpools.worker", description=__doc__)
add_arguments(parser)
parser.add_argument("-n", "--namespace", default=None, help="namespace of the pool (default: the context's)")
parser.add_argument("--kubeconfig", default=None)
parser.add_argument("--context", default=None)
sys.exit(run_worker(parser.parse_args()))
