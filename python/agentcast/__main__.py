"""``python -m agentcast ...`` (and the ``agentcast`` script pip installs): the agentcast command
itself, the same code as the binary, so a Python-only install can still serve go2rtc."""

import sys

from . import _agentcast


def main() -> int:
    return _agentcast.cli_main(["agentcast", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
