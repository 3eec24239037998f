"""An experiment's statistics from its stored data: `ray job submit -- python
jobs/experiment_report.py --function F --metric M`. The logic is in
tensorzero_ray.experimentation."""

import sys

from tensorzero_ray.experimentation.report_cli import main

if __name__ == "__main__":
    sys.exit(main())
