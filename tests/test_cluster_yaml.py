"""Both cluster configs pass Ray's own schema the way `ray up` checks it (prepare_config, then
validate_config: what ray.autoscaler's _bootstrap_config does before it asks the provider
for anything), and keep the properties docs/CLUSTER.md relies on. Neither call contacts AWS:
that starts only in the provider's bootstrap_config, which is not called here."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {name: ROOT / "cluster" / f"{name}.yaml" for name in ("aws", "onprem")}


def _load(name: str) -> dict:
    return yaml.safe_load(CONFIGS[name].read_text())


def _ray_checks(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ray_accepts_the_config(name):
    prepared = _ray_checks(_load(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_node_types_declare_their_resources():
    types = _ray_checks(_load("aws"))["available_node_types"]
    assert types["head"]["resources"] == {"CPU": 0}  # no trials on the head
    gpu_types = [t for name, t in types.items() if name != "head"]
    assert gpu_types and all(t["resources"]["GPU"] >= 1 and t["resources"]["CPU"] >= 1 for t in gpu_types)


@pytest.mark.parametrize("broken, where", [
    (lambda c: c.update(setup_comands=c.pop("setup_commands")), "setup_comands"),  # misspelled key
    (lambda c: c.update(idle_timeout_minutes="ten"), "idle_timeout_minutes"),  # wrong type
    (lambda c: c["auth"].update(ssh_usr=c["auth"].pop("ssh_user")), "ssh_usr"),
])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_ray_rejects_a_broken_config(name, broken, where):
    config = _load(name)
    broken(config)
    with pytest.raises(jsonschema.ValidationError, match=where):
        _ray_checks(config)


def test_ray_rejects_a_misspelled_node_type_field():
    config = _load("aws")
    config["available_node_types"]["gpu_1x"]["resource"] = config["available_node_types"]["gpu_1x"].pop("resources")
    with pytest.raises(jsonschema.ValidationError, match="resource"):
        _ray_checks(config)


def _commands(config: dict) -> list[str]:
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
            "worker_start_ray_commands")
    return [cmd for key in keys for cmd in config.get(key, [])]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_safe_defaults(name):
    config = _load(name)
    commands = _commands(config)
    # every `ray` is the venv's: nodes have no ray on their PATH
    bare = [c for c in commands if re.search(r"(^|[;&|(]\s*|\s)ray\s", c)]
    assert bare == []
    starts = [c for c in commands if "/.venv/bin/ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start --head" in c)
    assert "--dashboard-host=127.0.0.1" in head_start
    # the token is made on the head and shipped from there to every worker
    assert any("ray get-auth-token --generate" in c for c in config["head_setup_commands"])
    assert "~/.ray/auth_token" in config["cluster_synced_files"]
    # the tracking server is started on the head, after Ray
    assert "scripts/tracking-server restart" in config["head_start_ray_commands"][-1]
    # login shells on the nodes (ray exec, ray down) get the venv's ray and token auth
    assert any("export RAY_AUTH_MODE=token PATH=\"$HOME/orch/.venv/bin:$PATH\"" in c and "~/.bashrc" in c
               for c in config["setup_commands"])
    assert config["idle_timeout_minutes"] > 0
    assert ".venv" in config["rsync_exclude"]
