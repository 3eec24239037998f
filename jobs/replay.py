"""`ray job submit -- python jobs/replay.py ...`: see tensorzero_ray/replay/job.py."""

import sys

from tensorzero_ray.replay.job import main

if __name__ == "__main__":
    sys.exit(main())
