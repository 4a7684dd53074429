#!/usr/bin/env python3
"""Generate an Arduino sketch / PlatformIO project that runs a .tflite with TFLM on a board.

Same as ``edgeflow deploy mcu MODEL --board NAME -o DIR`` (this script calls it):

    python tools/make_mcu_project.py model_int8.tflite --board arduino-nano-33-ble -o fw/digits
"""

import sys

from edgeflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", "mcu", *sys.argv[1:]], prog_name="edgeflow"))
