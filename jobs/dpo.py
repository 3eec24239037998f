"""`ray job submit -- python jobs/dpo.py ...`: see tensorzero_ray/optimization/fine_tuning.py."""

import sys

from tensorzero_ray.optimization.fine_tuning import main

if __name__ == "__main__":
    sys.exit(main("dpo"))
