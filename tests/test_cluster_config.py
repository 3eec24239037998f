"""The files that take the stack past one machine, checked offline: cluster.yaml against Ray's
own cluster-launcher schema, the RayService manifest against the fields KubeRay's CRD
requires and against the Serve YAML it must stay in step with, and `tzray up --address`
to a cluster that does not answer."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import jsonschema
import yaml

from tensorzero_ray.cli import main as tzray_main

ROOT = Path(__file__).resolve().parent.parent
RAYSERVICE = ROOT / "deployments" / "kuberay" / "rayservice.yaml"

CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {"name": {"type": "string"}, "image": {"type": "string"}, "env": {"type": "array"}},
}
POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER}},
        }
    },
}
# What KubeRay's RayService CRD (ray.io/v1) requires of the fields this manifest uses.
RAYSERVICE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "spec": {
            "type": "object",
            "required": ["serveConfigV2", "rayClusterConfig"],
            "properties": {
                "serveConfigV2": {"type": "string"},
                "rayClusterConfig": {
                    "type": "object",
                    "required": ["headGroupSpec"],
                    "properties": {
                        "headGroupSpec": {
                            "type": "object",
                            "required": ["template"],
                            "properties": {
                                "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                                "template": POD_TEMPLATE,
                            },
                        },
                        "workerGroupSpecs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["groupName", "template"],
                                "properties": {
                                    "groupName": {"type": "string"},
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 0},
                                    "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "template": POD_TEMPLATE,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_cluster_yaml_passes_rays_cluster_launcher_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))
    head, worker = " ".join(raw["head_start_ray_commands"]), " ".join(raw["worker_start_ray_commands"])
    for commands in (head, worker):
        assert "RAY_AUTH_MODE=token" in commands and "RAY_SERVE_ENABLE_HA_PROXY=1" in commands
    assert "--head" in head and '"tensorzero_storage": 1' in head and "tensorzero_storage" not in worker
    assert "~/.ray/auth_token" in raw["file_mounts"]


def test_the_rayservice_manifest_has_what_kuberay_requires():
    service, claim = yaml.safe_load_all(RAYSERVICE.read_text())
    jsonschema.validate(service, RAYSERVICE_SCHEMA)
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    [container] = head["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    [mount] = container["volumeMounts"]
    [volume] = head["template"]["spec"]["volumes"]
    assert mount["mountPath"] == "/app/.tensorzero" and volume["name"] == mount["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["kind"] == "PersistentVolumeClaim"
    assert yaml.safe_load(head["rayStartParams"]["resources"].strip('"').replace('\\"', '"')) == {
        "tensorzero_storage": 1
    }
    [workers] = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert workers["template"]["spec"]["containers"][0]["env"] == container["env"]
    assert all(c["resources"]["requests"] for c in [container, *workers["template"]["spec"]["containers"]])


def test_the_rayservice_serves_what_the_serve_yaml_serves():
    """The same applications, but for the writer's placement on the node with the volume."""
    service, _ = yaml.safe_load_all(RAYSERVICE.read_text())
    served = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    quickstart = yaml.safe_load((ROOT / "deployments" / "quickstart.yaml").read_text())["applications"]
    writer = next(d for d in served[0]["deployments"] if d["name"] == "ObservabilityWriter")
    assert writer["ray_actor_options"].pop("resources") == {"tensorzero_storage": 0.01}
    assert served == quickstart


def test_up_names_a_cluster_that_does_not_answer(capsys):
    started = time.monotonic()
    status = tzray_main(["up", "--config", str(ROOT / "config/quickstart/tensorzero.toml"), "--address", "127.0.0.1:9"])
    assert status == 2 and time.monotonic() - started < 30
    assert "the Ray cluster at 127.0.0.1:9 does not answer" in capsys.readouterr().err
