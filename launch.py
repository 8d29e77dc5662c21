"""Start RF-DETR Studio: ``python launch.py`` (see ``--help``). Same as the ``rfdetr-studio`` command."""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
