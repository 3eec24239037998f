"""A MIPRO-style prompt search as a Ray job: `ray job submit -- python jobs/prompt_optimization.py
--config tensorzero.toml --function-name F --variant-name V --dataset-name D --proposal-model M
--output DIR`. The logic is in tensorzero_ray.optimization.prompt_search."""

import sys

from tensorzero_ray.optimization.prompt_search import main

if __name__ == "__main__":
    sys.exit(main())
