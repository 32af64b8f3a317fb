"""``python -m omni_edit``: the ``omni-edit`` command line, for when its script is not
on PATH (or to pick the interpreter). ``import omni_edit`` never imports this module."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
