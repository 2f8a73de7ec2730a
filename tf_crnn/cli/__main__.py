"""``python -m tf_crnn.cli ...``: the same as the ``tf-crnn`` console script."""
import sys

from . import main

sys.exit(main())
