"""Simulate track-and-stop against known arms before going live: `ray job submit -- python
jobs/bandit_simulation.py --arms bernoulli:0.5,0.6 --deltas 0.01,0.05,0.1`. The logic is in
tensorzero_ray.experimentation."""

import sys

from tensorzero_ray.experimentation.simulation_cli import main

if __name__ == "__main__":
    sys.exit(main())
