"""How far to trust an LLM judge: `ray job submit -- python jobs/judge_calibration.py
--function-name F --evaluator-name V`. The logic is in tensorzero_ray.evaluations."""

import sys

from tensorzero_ray.evaluations.calibration_cli import main

if __name__ == "__main__":
    sys.exit(main())
