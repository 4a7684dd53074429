#!/usr/bin/env python3
"""Pre-check a .tflite for the Coral Edge TPU, compile it, optionally benchmark on a Dev Board.

Same as ``edgeflow deploy coral MODEL [--host HOST] [options]`` (this script calls it):

    python tools/deploy_coral.py model_int8.tflite
    python tools/deploy_coral.py model_int8.tflite --host mendel@coral.local --runs 100
"""

import sys

from edgeflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", "coral", *sys.argv[1:]], prog_name="edgeflow"))
