"""Shows which environment it runs in: the conda prefix and its Python."""

import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--greeting", default="hello")
args = parser.parse_args()
print(f"{args.greeting} from {sys.prefix}")
print(f"python {sys.version.split()[0]}; CONDA_PREFIX={os.environ.get('CONDA_PREFIX')}")
print(f"EXAMPLE_MODE={os.environ.get('EXAMPLE_MODE')}")  # from conda.yaml's variables:
