"""deploy/: the files agree with each other and with zraft (peer ids vs host names vs
configs, secrets, volumes, exit codes), the configs load with zraft's own loader, the
scripts parse, the systemd unit passes ``systemd-analyze verify``, the Kubernetes
manifest passes its schema (where kubernetes-validate is installed), and the unit's
command line runs a real node. What cannot run here (no container runtime or cluster in
the test suite) is said in README: Deploying."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from zraft.config import NodeConfig, load_config
from zraft.filemodes import write_private
from zraft.ids import PeerId

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s" / "zraft.yaml"
UNIT = DEPLOY / "systemd" / "zraft-node@.service"
NODE_SERVICES = ("node1", "node2", "node3")


def cookie(tmp_path: Path) -> str:
    path = tmp_path / "cookie"
    write_private(path, "test-cookie\n")
    return str(path)


def load(path: Path, tmp_path: Path, **overrides: Any) -> NodeConfig:
    """A deploy config through zraft's loader, its cookie file swapped for a local one
    (the deployed path, e.g. /run/secrets/..., does not exist here)."""
    return load_config(path, cookie_file=cookie(tmp_path), **overrides)


# -- compose -----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_peer_ids_host_names_and_configs_agree(tmp_path: Path) -> None:
    doc = compose()
    services = doc["services"]
    assert set(NODE_SERVICES) <= set(services)
    secret_name, = doc["secrets"]
    assert doc["secrets"][secret_name]["file"] == "./secrets/cookie"
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == [
        "*", "!.gitignore"]  # the cookie is never committed
    volumes = set()
    peers = []
    for name in NODE_SERVICES:
        svc = services[name]
        env = svc["environment"]
        peer = PeerId.parse(env["ZRAFT_PEER"])
        assert svc["hostname"] == name == peer.host, name  # the name others resolve
        peers.append(str(peer))
        assert svc["secrets"] == [secret_name]
        assert env["ZRAFT_COOKIE_FILE"] == f"/run/secrets/{secret_name}"
        mounts = dict(reversed(v.split(":")[:2]) for v in svc["volumes"])
        config_path = (COMPOSE.parent / mounts["/etc/zraft/node.toml"]).resolve()
        volumes.add(mounts["/var/lib/zraft"])
        raw = config_path.read_text()
        assert f'cookie_file = "/run/secrets/{secret_name}"' in raw
        cfg = load(config_path, tmp_path)
        assert cfg.listen == peer.node  # the node's id is what its peer id names
        assert cfg.log_dir.startswith("/var/lib/zraft/")  # on the node's own volume
        assert cfg.snapshot_dir.startswith("/var/lib/zraft/")
        assert cfg.logging.dir.startswith("/var/lib/zraft/")
        assert cfg.snapshot_endpoint()[1] == name  # transfers dial the host name too
        assert not cfg.fault_injection
        assert svc["restart"].startswith("on-failure")  # never restarts a clean stop
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / svc["build"]["context"]).resolve() == ROOT
    assert len(volumes) == 3 and volumes <= set(doc["volumes"])  # one volume per node
    create = services["create"]
    assert create["entrypoint"] == ["zraft-create-cluster"] and create["restart"] == "no"
    assert create["environment"]["ZRAFT_PEERS"].split(",") == peers
    assert set(create["depends_on"]) == set(NODE_SERVICES)
    assert create["environment"]["ZRAFT_COOKIE_FILE"] == f"/run/secrets/{secret_name}"


# -- Dockerfile --------------------------------------------------------------------------


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_runs_the_node_as_a_user_from_the_repository(tmp_path: Path) -> None:
    lines = dockerfile()
    assert lines[0] == "ARG BASE=python:3.11-slim"
    copies = [line.split()[1:-1] for line in lines
              if line.startswith("COPY ") and "--from" not in line]
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), src
    scripts = [s for sources in copies for s in sources if s.startswith("deploy/bin/")]
    assert sorted(Path(s).name for s in scripts) == sorted(
        p.name for p in (DEPLOY / "bin").iterdir())
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and not users[-1].startswith(("root", "0"))
    assert lines[-2] == 'ENTRYPOINT ["python", "-m", "zraft.node"]'
    assert lines[-1] == 'CMD ["--config", "/etc/zraft/node.toml"]'
    assert 'VOLUME ["/var/lib/zraft"]' in lines
    assert any(line.startswith("HEALTHCHECK ") and "zraft-healthcheck" in line
               for line in lines)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for sources in copies:  # nothing the Dockerfile copies is left out of the context
        for src in sources:
            assert any(src == k or src.startswith(f"{k}/") for k in kept), src


@pytest.mark.timeout(120)
def test_what_the_dockerfile_copies_is_enough_to_build_zraft(tmp_path: Path) -> None:
    """The build stage's ``pip wheel .`` on exactly the files COPY puts there."""
    src = tmp_path / "src"
    src.mkdir()
    build_copies = [line.split()[1:-1] for line in dockerfile()
                    if line.startswith("COPY ") and "--from" not in line
                    and "deploy/bin" not in line]
    for sources in build_copies:
        for rel in sources:
            path = ROOT / rel
            if path.is_dir():
                shutil.copytree(path, src / rel,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, src / rel)
    out = tmp_path / "wheels"
    # with build isolation, as in the image (pip fetches setuptools and wheel for it)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "-q", "--wheel-dir", str(out), str(src)],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = out.glob("zraft-*.whl")
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "zraft/node/__main__.py" in names and "zraft/cli.py" in names


def test_deploy_scripts_parse_and_are_executable() -> None:
    for script in [*(DEPLOY / "bin").iterdir(), *DEPLOY.glob("check-*.sh")]:
        assert script.stat().st_mode & 0o111, script
        assert script.read_text().startswith("#!/bin/sh\n"), script
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, script


def test_healthcheck_without_its_peer_is_unhealthy_not_docker_reserved_2() -> None:
    done = subprocess.run([str(DEPLOY / "bin" / "zraft-healthcheck")], env={"PATH": "/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "set ZRAFT_PEER" in done.stderr


# -- systemd -----------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_restarts_failures_but_never_a_config_error(tmp_path: Path) -> None:
    s = unit_settings()
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]  # python -m zraft.node: exit 2 = refused
    assert s["User"] == ["zraft"] and s["Group"] == ["zraft"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "yes"),
                       ("CapabilityBoundingSet", "")):
        assert s[key] == [value], key
    assert s["StateDirectory"] == ["zraft/%i"] and s["LogsDirectory"] == ["zraft/%i"]
    exec_start = shlex.split(s["ExecStart"][0])
    assert exec_start[1:6] == ["-m", "zraft.node", "--config", "/etc/zraft/%i.toml",
                               "--cookie-file"]
    assert s["LoadCredential"] == ["cookie:/etc/zraft/cookie"]
    # the template config, as instance node1: its directories are the unit's
    cfg = load(DEPLOY / "systemd" / "node.toml", tmp_path)
    assert cfg.log_dir == cfg.snapshot_dir == "/var/lib/zraft/node1/data"
    assert cfg.logging.dir == "/var/log/zraft/node1"
    assert PeerId.parse(f"zraft@{cfg.listen}").host == "node1.example.com"
    assert cfg.raft.snapshot_listener_port != 0  # one port to open in the firewall


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """Its only complaint about the file as shipped is that /opt/zraft/bin/python does
    not exist here: so verify a copy whose ExecStart names this Python."""
    text = UNIT.read_text().replace("/opt/zraft/bin/python", sys.executable)
    (tmp_path / UNIT.name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "zraft-node@node1.service"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr
    (tmp_path / UNIT.name).write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    bad = subprocess.run(["systemd-analyze", "verify", "zraft-node@node1.service"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "restart specifier" in bad.stderr  # it does read the file


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_units_command_line_runs_a_node_and_a_bad_config_exits_2(tmp_path: Path) -> None:
    """ExecStart as systemd runs it (the config, and the cookie as a 0400 credential),
    with the template's paths moved under tmp_path and a free port."""
    from zraft.cluster.local import free_port
    cred = tmp_path / "credentials"
    cred.mkdir()
    (cred / "cookie").write_text("secret\n")
    (cred / "cookie").chmod(0o400)
    port = free_port()
    text = (DEPLOY / "systemd" / "node.toml").read_text()
    text = text.replace("node1.example.com:7000", f"localhost:{port}")
    text = text.replace("/var/lib/zraft/node1", str(tmp_path / "state"))
    text = text.replace("/var/log/zraft/node1", str(tmp_path / "logs"))
    text = text.replace("snapshot_listener_port = 7001", "snapshot_listener_port = 0")
    (tmp_path / "node1.toml").write_text(text)
    argv = shlex.split(unit_settings()["ExecStart"][0].replace("%i", "node1").replace(
        "${CREDENTIALS_DIRECTORY}", str(cred)).replace("/etc/zraft", str(tmp_path)))
    argv[0] = sys.executable
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"zraft node localhost:{port} ready", line
        assert (tmp_path / "state" / "data").is_dir() and (tmp_path / "logs").is_dir()
        proc.terminate()  # KillSignal=SIGTERM: a clean stop is exit 0, not a failure
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    (tmp_path / "node1.toml").write_text(text.replace(f"localhost:{port}", "0.0.0.0:7000"))
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "not a wildcard" in bad.stderr  # not restarted


# -- Kubernetes --------------------------------------------------------------------------


def k8s() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_k8s_names_probes_volumes_and_the_create_job_agree(tmp_path: Path) -> None:
    docs = k8s()
    svc, sts, pdb, job = (docs["Service"], docs["StatefulSet"],
                          docs["PodDisruptionBudget"], docs["Job"])
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == labels == pdb["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    pod = sts["spec"]["template"]["spec"]
    node, = pod["containers"]
    env = [e["name"] for e in node["env"]]
    # $(VAR) in env and args only expands variables defined earlier in the list
    assert env.index("POD_NAME") < env.index("ZRAFT_NODE") < env.index("ZRAFT_PEER")
    values = {e["name"]: e.get("value") for e in node["env"]}
    args = node["args"]
    listen = args[args.index("--listen") + 1]
    assert listen == "$(ZRAFT_NODE)"
    port = svc["spec"]["ports"][0]["port"]
    template = values["ZRAFT_NODE"]
    assert template == f"$(POD_NAME).{svc['metadata']['name']}.$(POD_NAMESPACE)" \
                       f".svc.cluster.local:{port}"
    name, ns = sts["metadata"]["name"], "$(POD_NAMESPACE)"
    expected = [f"zraft@{template.replace('$(POD_NAME)', f'{name}-{i}')}"
                for i in range(sts["spec"]["replicas"])]
    create, = job["spec"]["template"]["spec"]["containers"]
    job_env = {e["name"]: e.get("value") for e in create["env"]}
    assert job_env["ZRAFT_PEERS"].split(",") == expected and ns in job_env["ZRAFT_PEERS"]
    assert create["command"] == ["zraft-create-cluster"]
    assert node["readinessProbe"]["exec"]["command"] == ["zraft-healthcheck"]
    assert values["ZRAFT_PEER"] == "zraft@$(ZRAFT_NODE)"
    # the cookie: a private copy made by the init container is what the node reads
    init, = pod["initContainers"]
    copy_to = init["command"][-1]
    assert args[args.index("--cookie-file") + 1] == copy_to == values["ZRAFT_COOKIE_FILE"]
    assert init["command"][:3] == ["install", "-m", "0600"]
    secret_vol = next(v for v in pod["volumes"] if "secret" in v)
    job_secret = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert secret_vol["secret"]["secretName"] == job_secret["secret"]["secretName"]
    mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    claim, = sts["spec"]["volumeClaimTemplates"]
    assert mounts["/var/lib/zraft"] == claim["metadata"]["name"]
    run_dir = str(Path(copy_to).parent)
    assert mounts[run_dir] in {m["name"] for m in init["volumeMounts"]}
    # the ConfigMap's node.toml, with the command line's listen and cookie file
    (tmp_path / "node.toml").write_text(docs["ConfigMap"]["data"]["node.toml"])
    cfg = load(tmp_path / "node.toml", tmp_path,
               listen=f"{name}-0.zraft.default.svc.cluster.local:{port}")
    assert cfg.log_dir.startswith(mounts and "/var/lib/zraft/")
    assert cfg.snapshot_endpoint()[1] == f"{name}-0.zraft.default.svc.cluster.local"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_manifest_passes_the_kubernetes_schema() -> None:
    """Strict schema validation (unknown fields, types) for Kubernetes 1.31, offline:
    ``kubectl --dry-run=client`` needs an API server even to validate."""
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="pip install kubernetes-validate (make deploy-check does) to validate")
    for doc in k8s().values():
        kv.validate(doc, "1.31", strict=True)
