"""The Kubernetes manifests in docker/kubernetes/, validated offline: every built-in kind against
the Kubernetes schemas that kubernetes-validate ships (strict: unknown fields are errors), and the
KubeRay RayCluster against docker/kubernetes/schemas/raycluster-ray-v1.json, written from KubeRay's
CRD, whose pod templates refer to the same Kubernetes schemas. Then what agentcast needs of them:
pinned images, resources on every container, the downward API names and addresses behind
--register, and the GPU variant's devices, driver capabilities and per-node lock directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conftest import ROOT

kv = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")
import jsonschema  # noqa: E402  (kubernetes-validate's own dependencies)
from kubernetes_validate import utils as kv_utils  # noqa: E402
from referencing import Registry, Resource  # noqa: E402

MANIFESTS = ROOT / "docker/kubernetes"
RAY_SCHEMA = MANIFESTS / "schemas/raycluster-ray-v1.json"
IMAGES = {"agentcast:0.1.0", "agentcast-ray:0.1.0"}
# The oldest Kubernetes still commonly run, and the newest kubernetes-validate knows.
VERSIONS = ["1.29.0", kv_utils.latest_version()]


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def validate_raycluster(doc: dict, version: str) -> None:
    """Validates against our RayCluster schema, with kubernetes-validate's strict definitions of
    `version` for the pod templates."""
    schema = json.loads(RAY_SCHEMA.read_text())
    mm = kv_utils.major_minor(version)
    have = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= mm][-1]
    defs = kv_utils.schema_contents(f"kubernetes-json-schema/v{have}-local-strict/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


def validate(doc: dict, version: str) -> None:
    if doc["kind"] == "RayCluster":
        validate_raycluster(doc, version)
    else:
        # SchemaNotFoundError (a kind it does not know) is raised, not passed over.
        kv.validate(doc, version, strict=True)


def pod_specs() -> list[tuple[str, dict]]:
    out = []
    for name, doc in documents():
        spec = doc.get("spec", {})
        if "template" in spec:
            out.append((f"{name} {doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]))
        if doc["kind"] == "RayCluster":
            out.append((f"{name} head", spec["headGroupSpec"]["template"]["spec"]))
            for g in spec["workerGroupSpecs"]:
                out.append((f"{name} workers {g['groupName']}", g["template"]["spec"]))
    return out


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_manifests_are_the_expected_kinds() -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in documents())
    assert kinds == sorted([
        "ConfigMap/go2rtc", "Deployment/go2rtc", "Service/go2rtc", "Service/agent", "StatefulSet/agent",
        "Service/agent-gpu", "StatefulSet/agent-gpu", "RayCluster/agentcast-fleet",
    ]), kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates(version: str) -> None:
    for name, doc in documents():
        try:
            validate(doc, version)
        except jsonschema.ValidationError as e:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                        f"{'.'.join(map(str, e.path))}: {e.message}")


@pytest.mark.parametrize("kind,path,value", [
    ("StatefulSet", ["spec", "replicas"], "four"),
    ("StatefulSet", ["spec", "template", "spec", "containers", 0, "resources", "limit"], {"cpu": "1"}),
    ("Deployment", ["spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"], "api"),
    ("RayCluster", ["spec", "workerGroupSpecs", 0, "replica"], 2),
    ("RayCluster", ["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "imagePullPolicy"], 3),
    ("RayCluster", ["spec", "headGroupSpec", "rayStartParams", "num-cpus"], 0),
])
def test_a_broken_manifest_fails(kind: str, path: list, value: object) -> None:
    """The validation can fail: a wrong type or an unknown field in any of the kinds is caught."""
    doc = copy.deepcopy(next(d for _, d in documents() if d["kind"] == kind))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, VERSIONS[-1])


def test_images_are_pinned_and_every_container_has_resources() -> None:
    for where, spec in pod_specs():
        for c in containers(spec):
            assert c["image"] in IMAGES, f"{where} {c['name']}: image {c['image']} (expected one of {IMAGES})"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), \
                    f"{where} {c['name']}: no cpu and memory {kind}"


def test_agents_register_under_their_pod_name_and_ip() -> None:
    for where, spec in pod_specs():
        if "StatefulSet/agent" not in where:
            continue
        agent = spec["containers"][0]
        args, env = agent["args"], env_of(agent)
        assert "--output=rtsp-listen:0.0.0.0:8554/agent" in args, where
        assert {"--register=http://go2rtc:1984", "--name=$(POD_NAME)", "--advertise=$(POD_IP)"} <= set(args), where
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", where
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", where
        assert {"name": "rtsp", "containerPort": 8554, "protocol": "TCP"} in agent["ports"], where
    services = {d["metadata"]["name"]: d for _, d in documents() if d["kind"] == "Service"}
    api = next(p for p in services["go2rtc"]["spec"]["ports"] if p["name"] == "api")
    assert api["port"] == 1984, "agents register at http://go2rtc:1984"
    config = yaml.safe_load(next(d for _, d in documents() if d["kind"] == "ConfigMap")["data"]["go2rtc.yaml"])
    assert config["api"]["listen"] == ":1984" and config["rtsp"]["listen"] == ":8554"


def test_the_gpu_agents_get_a_gpu_its_capabilities_and_a_per_node_lock_dir() -> None:
    spec = next(s for w, s in pod_specs() if "StatefulSet/agent-gpu" in w)
    agent = next(c for c in spec["containers"] if c["name"] == "agent")
    assert agent["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = env_of(agent)
    assert set(env["NVIDIA_DRIVER_CAPABILITIES"]["value"].split(",")) >= {"compute", "video", "graphics", "utility"}
    lock_dir = env["AGENTCAST_LOCK_DIR"]["value"]
    mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == lock_dir)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"]["type"] == "DirectoryOrCreate", "the locks must live on the node, shared by its pods"


def test_the_ray_workers_know_their_pod_and_go2rtc() -> None:
    ray = next(d for _, d in documents() if d["kind"] == "RayCluster")
    assert ray["spec"]["rayVersion"].count(".") == 2, "pin the Ray version"
    for group in ray["spec"]["workerGroupSpecs"]:
        env = env_of(group["template"]["spec"]["containers"][0])
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["GO2RTC_URL"]["value"] == "http://go2rtc:1984"
