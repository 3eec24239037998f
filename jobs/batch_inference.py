"""Run a file of inference requests through the gateway as a Ray job: `ray job submit --
python jobs/batch_inference.py --input requests.jsonl`. The logic is in
tensorzero_ray.inference.ray_batch."""

import sys

from tensorzero_ray.inference.ray_batch import main

if __name__ == "__main__":
    sys.exit(main())
