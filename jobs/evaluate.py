"""Run an evaluation: `ray job submit -- python jobs/evaluate.py --function-name F --variant-name V
--dataset-name D` (TensorZero's `evaluations` flags). The logic is in tensorzero_ray.evaluations."""

import sys

from tensorzero_ray.evaluations.cli import main

if __name__ == "__main__":
    sys.exit(main())
