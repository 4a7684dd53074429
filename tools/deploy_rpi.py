#!/usr/bin/env python3
"""Deploy a .tflite to a Raspberry Pi over SSH and benchmark it there.

Same as ``edgeflow deploy rpi MODEL HOST [options]`` (this script calls it):

    python tools/deploy_rpi.py model.tflite pi@raspberrypi.local --runs 100 --threads 4
    python tools/deploy_rpi.py model.tflite pi@raspberrypi.local --dry-run
"""

import sys

from edgeflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", "rpi", *sys.argv[1:]], prog_name="edgeflow"))
