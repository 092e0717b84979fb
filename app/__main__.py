"""`python -m app`: the same as `python -m app.demo`."""
import sys

from .demo import main

sys.exit(main())
