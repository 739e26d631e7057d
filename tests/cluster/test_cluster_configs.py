"""cluster/: the launcher YAML validates against the schema inside the ray package; the KubeRay
manifests parse and carry what docs/cluster.md says they do."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
IMAGE = "rayrec:0.1.0"
LOCAL_RAY = ray.__version__


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def launcher() -> dict:
    return _load(CLUSTER / "aws-gpu.yaml")


def test_launcher_yaml_validates_against_rays_schema(launcher):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)


def test_launcher_yaml_passes_rays_own_checks(launcher):
    from ray.autoscaler._private.util import validate_config

    validate_config(launcher)


def test_launcher_node_types(launcher):
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] == "head"
    assert types["head"]["resources"].get("GPU", 0) == 0
    assert types["learner_gpu"]["resources"]["GPU"] == 1
    assert types["rollout_cpu"]["resources"].get("GPU", 0) == 0
    for name in ("rollout_cpu", "learner_gpu"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"], name
    assert sum(t.get("max_workers", 0) for t in types.values()) <= launcher["max_workers"]


def test_launcher_keeps_auth_on_and_dashboard_private(launcher):
    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert "--dashboard-host=127.0.0.1" in head
    assert "~/.ray/auth_token" in launcher["file_mounts"]


def _cluster_spec(doc: dict) -> dict:
    return {
        "RayCluster": lambda: doc["spec"],
        "RayJob": lambda: doc["spec"]["rayClusterSpec"],
        "RayService": lambda: doc["spec"]["rayClusterConfig"],
    }[doc["kind"]]()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("raycluster.yaml", "RayCluster"),
        ("rayjob.yaml", "RayJob"),
        ("rayservice.yaml", "RayService"),
    ],
)
def test_kuberay_manifest(name, kind):
    doc = _load(KUBERAY / name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == kind
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == LOCAL_RAY
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"  # 8265/6379/10001 never public
    assert head["rayStartParams"].get("num-gpus", "0") == "0"
    containers = [head["template"]["spec"]["containers"][0]]
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group
        containers.append(group["template"]["spec"]["containers"][0])
    for container in containers:
        assert container["image"].startswith(IMAGE)
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_gpu_group_asks_for_a_gpu():
    for name in ("raycluster.yaml", "rayjob.yaml"):
        groups = {
            g["groupName"]: g for g in _cluster_spec(_load(KUBERAY / name))["workerGroupSpecs"]
        }
        gpu = groups["learner-gpu"]
        assert gpu["rayStartParams"]["num-gpus"] == "1"
        limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1"


def test_rayjob_runs_a_training_spec_with_a_profile():
    spec = _load(KUBERAY / "rayjob.yaml")["spec"]
    entry = spec["entrypoint"]
    assert "rayrec train" in entry and "--profile cluster-gpu" in entry
    for path in ("envs/session.yaml", "policies/ppo.yaml"):
        assert path in entry and (ROOT / path).is_file(), path
    assert (ROOT / "rayrec" / "profiles" / "cluster-gpu.yaml").is_file()
    assert "--out /mnt/runs/" in entry
    assert spec["shutdownAfterJobFinishes"] is True


def test_rayservice_serves_the_rayrec_app():
    serve = yaml.safe_load(_load(KUBERAY / "rayservice.yaml")["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == "rayrec.serve.app:build_app"
    assert app["route_prefix"] == "/"
    assert serve["http_options"]["port"] == 8000
    assert serve["http_options"]["request_timeout_s"] > 0  # overload: 408, never a hang
    # Every arg is a field the builder knows; the key files come from the mounted Secret.
    import dataclasses

    from rayrec.serve.app import DeploymentOptions
    from rayrec.serve.settings import ServiceSettings

    known = {
        f.name for cls in (DeploymentOptions, ServiceSettings) for f in dataclasses.fields(cls)
    }
    assert set(app["args"]) <= known and app["args"]["max_queued_requests"] >= 1
    spec = _load(KUBERAY / "rayservice.yaml")["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert "/etc/rayrec" in mounts
        assert any(
            v.get("secret", {}).get("secretName") == "rayrec-serve-secrets" for v in pod["volumes"]
        )
    for key in ("api_key_file", "request_id_key_file"):
        assert app["args"][key].startswith("/etc/rayrec/")


def test_docs_name_the_manifests_fields():
    docs = (ROOT / "docs" / "cluster.md").read_text()
    for needle in (
        "cluster/aws-gpu.yaml",
        "cluster/kuberay/raycluster.yaml",
        "cluster/kuberay/rayjob.yaml",
        "cluster/kuberay/rayservice.yaml",
        "rayrec.serve.app:build_app",
        "authOptions",
        IMAGE,
        "8265",
        "6379",
        "10001",
    ):
        assert needle in docs, needle


def test_rayservice_args_are_serve_app_arguments():
    """The RayService's application args are ones rayrec.serve.app.build_app accepts."""
    import dataclasses

    from rayrec.serve.app import DeploymentOptions
    from rayrec.serve.service import ServiceSettings

    manifest = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayservice.yaml").read_text())
    (app,) = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    assert app["import_path"] == "rayrec.serve.app:build_app"
    known = {f.name for f in dataclasses.fields(ServiceSettings)} | {
        f.name for f in dataclasses.fields(DeploymentOptions)
    }
    assert "checkpoint" in app["args"]
    assert set(app["args"]) <= known, set(app["args"]) - known
