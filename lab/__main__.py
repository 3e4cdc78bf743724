"""`python -m lab [EXP ...]`: the experiments of k8s/ (lab/run.py)."""

import sys

from lab.run import main

results = main()
sys.exit(0 if all(r.ok for r in results) else 1)
