"""`tzray keys create|list|disable`: API keys through a Gateway replica of the running stack,
reached with Ray's own authentication, so the first key needs no key."""

from __future__ import annotations

import logging
import sys

from tensorzero_ray.serve.app import APP_NAME


def keys_command(args) -> int:
    import ray
    from ray import serve

    try:
        ray.init(address=args.address or "auto", logging_level="ERROR", log_to_driver=False)
    except ConnectionError:
        print("no Ray cluster is running (`tzray up` starts one)", file=sys.stderr)
        return 1
    if APP_NAME not in serve.status().applications:
        print("tensorzero-ray is not deployed on this cluster (`tzray up` deploys it)", file=sys.stderr)
        return 1
    # Serve's own INFO lines are not this command's output.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    gateway = serve.get_deployment_handle("Gateway", APP_NAME)
    try:
        if args.keys_command == "create":
            made = gateway.create_api_key.remote(args.description, args.expiration).result(timeout_s=60)
            print(made["api_key"])
            print(f"public id {made['public_id']}; shown once: only its hash is stored", file=sys.stderr)
        elif args.keys_command == "list":
            listed = gateway.list_api_keys.remote().result(timeout_s=60)
            print(f"{'public id':<14}{'state':<10}{'created':<22}{'expires':<22}description")
            for key in listed:
                expires = (key["expires_at"] or "-")[:19]
                print(
                    f"{key['public_id']:<14}{key['state']:<10}{key['created_at'][:19]:<22}{expires:<22}{key['description']}"
                )
        else:
            done = gateway.disable_api_key.remote(args.public_id).result(timeout_s=60)
            print(f"disabled {done['public_id']} at {done['disabled_at']}")
    except Exception as exc:  # noqa: BLE001 - the gateway's own message is what the user needs
        message = getattr(exc, "message", None) or str(exc).strip().splitlines()[-1]
        print(f"tzray keys {args.keys_command}: {message}", file=sys.stderr)
        return 1
    return 0
