"""``python -m drones.parse``: see ``drones.parse.cli``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
