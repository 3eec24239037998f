"""Curate and embed examples for a DICL variant: `ray job submit -- python jobs/dicl.py
--function-name F --variant-name V --embedding-model E --model M`. The logic is in
tensorzero_ray.optimization."""

import sys

from tensorzero_ray.optimization.dicl_job import main

if __name__ == "__main__":
    sys.exit(main())
