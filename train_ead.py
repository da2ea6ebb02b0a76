#!/usr/bin/env python3
"""Train, resume or evaluate the TAAF network offline; see ``python train_ead.py --help``."""

import sys

from taaf_ros.apps.train import main

if __name__ == "__main__":
    sys.exit(main())
