"""`ray job submit -- python jobs/openai_sft.py ...`: see tensorzero_ray/optimization/openai_fine_tuning.py."""

import sys

from tensorzero_ray.optimization.openai_fine_tuning import main

if __name__ == "__main__":
    sys.exit(main())
