"""`python -m lab [EXP ...]`: the experiments of k8s/ (lab/run.py)."""

import sys

from lab.common import end_on_signals
from lab.run import main

end_on_signals()
sys.exit(0 if all(r.ok for r in main()) else 1)
