"""`python -m scalespace.cli`: the `scalespace` command."""

import sys

from scalespace.cli import main

sys.exit(main())
