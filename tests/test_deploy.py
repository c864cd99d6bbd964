"""What operators deploy with (deploy/): the Dockerfile, the compose topology and the Helm
chart hold what a drain-safe, non-root, shared-store deployment needs, and agree with one
another and with the gateway itself (its config schema, its command line, the nginx file).

No container engine or cluster runs here: the chart is rendered by Helm's own engine
(helm-python-sdk, Helm's Go SDK as a library), the compose file is read as YAML (and
checked by docker-compose when installed), the Dockerfile as its instructions (and built
and run by tests/test_image.py, opt-in)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import yaml

from savegate.api import routes
from savegate.cli import build_parser
from savegate.config import Config, load_config
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "savegate"
NGINX_CONF = DEPLOY / "nginx" / "savegate.conf"
SUPERVISOR_BACKSTOP = 15  # cli/workers.py: workers are killed at grace + 15 s


# --- Dockerfile ----------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (the unnamed last one is "final")."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions((DEPLOY / "Dockerfile").read_text()):
        if word == "FROM":
            name = rest.split(" AS ")[1].strip() if " AS " in rest else "final"
            current = named.setdefault(name, [])
        if current is not None:
            current.append((word, rest))
    return named


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not in exec form: {args}"
    return value


def healthcheck_command() -> list[str]:
    (check,) = [rest for word, rest in stages()["final"] if word == "HEALTHCHECK"]
    return exec_form(check.partition(" CMD ")[2])


def entrypoint() -> list[str]:
    final = stages()["final"]
    (command,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    return exec_form(command)


def test_dockerfile_builds_llama_once_in_a_stage_of_its_own() -> None:
    built = stages()
    assert {"llama", "builder", "final"} <= built.keys()
    llama = built["llama"]
    runs = " ".join(rest for word, rest in llama if word == "RUN")
    assert "pip wheel" in runs and "--wheel-dir /wheels" in runs
    # Its cache must not depend on the code: it copies only the pin, from a tiny stage.
    copies = [rest for word, rest in llama if word == "COPY"]
    assert copies == ["--from=pins /tmp/llama.txt /tmp/llama.txt"]
    assert [rest for word, rest in built["pins"] if word == "COPY"] == [
        "constraints.txt /tmp/constraints.txt"
    ]
    # The pin it greps for is there.
    pattern = re.search(r"grep -iE '([^']+)'", " ".join(r for _, r in built["pins"]))
    assert pattern, "the pins stage no longer greps the llama pin"
    constraints = (ROOT / "constraints.txt").read_text()
    assert len(re.findall(pattern.group(1), constraints, re.I | re.M)) == 1
    # The builder installs that wheel, the final image only copies the virtualenv.
    builder = built["builder"]
    assert "--from=llama /wheels /wheels" in [r for w, r in builder if w == "COPY"]
    final = built["final"]
    assert ("COPY", "--from=builder /opt/savegate /opt/savegate") in final
    assert not any("build-essential" in rest for _, rest in final)


def test_dockerfile_installs_exactly_the_pinned_versions() -> None:
    text = " ".join(rest for word, rest in instructions((DEPLOY / "Dockerfile").read_text()))
    installs = re.findall(r"pip install ([^&]+)", text)
    assert installs
    for args in installs:
        assert "-c /src/constraints.txt" in args, args


def test_image_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in stages()["final"] if word == "USER"]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0 and (not group or int(group) != 0)


def test_image_serves_on_all_interfaces_with_its_config_and_data_volume() -> None:
    final = stages()["final"]
    command = entrypoint()
    assert command[:2] == ["savegate", "serve"]
    args = build_parser().parse_args(command[1:])
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert (args.config, args.data_dir) == ("/etc/savegate/savegate.yaml", "/var/lib/savegate")
    assert ("VOLUME", '["/var/lib/savegate"]') in final
    assert ("EXPOSE", "8000") in final
    (cmd,) = [rest for word, rest in final if word == "CMD"]
    assert build_parser().parse_args([*command[1:], *exec_form(cmd)]).workers == "auto"
    assert "127.0.0.1:8000/health/ready" in " ".join(healthcheck_command())


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        return None


@pytest.fixture
def health_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_passes_when_serving_and_fails_when_draining(
    health_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    port = health_server.server_address[1]
    argv = [sys.executable, *(arg.replace(":8000/", f":{port}/") for arg in command[1:])]

    def check() -> int:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode

    assert check() == 0
    monkeypatch.setattr(Health, "status", 503)  # {"status": "draining", …}
    assert check() != 0


def ignored(path: str, rules: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Docker's rules: the
    last pattern matching the path or one of its parents wins; `!` lets it back in)."""

    def regex(pattern: str) -> re.Pattern[str]:
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
        table = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(table.get(p, re.escape(p)) for p in parts) + "$")

    parents = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    out = False
    for rule in rules:
        negate = rule.startswith("!")
        if any(regex(rule.lstrip("!")).match(p) for p in parents):
            out = not negate
    return out


def test_dockerignore_lets_in_what_the_image_copies_and_nothing_private() -> None:
    text = (ROOT / ".dockerignore").read_text()
    rules = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    every = [rest for stage in stages().values() for word, rest in stage if word == "COPY"]
    copied = [src for rest in every if not rest.startswith("--from") for src in rest.split()[:-1]]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source, rules), source
    assert not ignored("src/savegate/web/static/vendor/chart.umd.min.js", rules)
    for private in (".venv/bin/python", ".savegate/savegate.db", ".git/config", "tests/x.py"):
        assert ignored(private, rules), private
    assert ignored("src/savegate/__pycache__/app.cpython-311.pyc", rules)


# --- docker compose ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def nginx_replicas() -> list[str]:
    return re.findall(r"^\s*server\s+([\w-]+):8000\b", NGINX_CONF.read_text(), re.M)


def test_compose_runs_the_replicas_nginx_names_behind_nginx(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replicas = nginx_replicas()
    assert replicas == ["savegate-1", "savegate-2"]
    assert {*replicas, "nginx", "postgres", "redis"} <= services.keys()
    nginx = services["nginx"]
    (mount,) = nginx["volumes"]
    source, target, _ = mount.split(":")
    assert (DEPLOY / source).resolve() == NGINX_CONF.resolve()
    assert target == "/etc/nginx/conf.d/default.conf"
    listen = re.search(r"^\s*listen\s+(\d+);", NGINX_CONF.read_text(), re.M)
    assert listen and any(p.endswith(f":{listen.group(1)}") for p in nginx["ports"])
    for name in replicas:
        assert nginx["depends_on"][name] == {"condition": "service_healthy"}


def test_compose_replicas_wait_for_shared_stores_and_drain_in_time(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    config = load_config(str(DEPLOY / "savegate.yaml"))
    grace = config.server.shutdown_grace_seconds
    for name in nginx_replicas():
        replica = services[name]
        build = replica["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
        assert replica["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert replica["healthcheck"]["test"] == ["CMD", *healthcheck_command()]
        stop_grace = int(replica["stop_grace_period"].removesuffix("s"))
        assert stop_grace > grace + SUPERVISOR_BACKSTOP
        source, target, mode = replica["volumes"][0].split(":")
        assert (DEPLOY / source).resolve() == (DEPLOY / "savegate.yaml").resolve()
        assert (target, mode) == ("/etc/savegate/savegate.yaml", "ro")
        args = build_parser().parse_args([*entrypoint()[1:], *replica["command"]])
        assert args.workers == 2
        env = replica["environment"]
        assert env["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for name in ("postgres", "redis", "nginx"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def test_compose_publishes_each_replicas_metrics_port_on_loopback(
    compose: dict[str, Any],
) -> None:
    config = load_config(str(DEPLOY / "savegate.yaml"))
    port = config.metrics.port
    assert port is not None and config.metrics.enabled
    main = build_parser().parse_args(entrypoint()[1:]).port
    assert port != main
    published = []
    for name in nginx_replicas():
        (mapping,) = compose["services"][name]["ports"]
        host, host_port, container_port = mapping.split(":")
        assert (host, int(container_port)) == ("127.0.0.1", port), mapping  # not public
        published.append(int(host_port))
    assert len(set(published)) == len(published)
    # The file's opening comment tells where to scrape.
    header = (DEPLOY / "docker-compose.yaml").read_text().partition("\nx-savegate")[0]
    assert all(str(number) in header for number in [port, *published])
    # nginx and the health check stay on the main port: the metrics one serves /metrics only.
    assert f":{port}" not in NGINX_CONF.read_text()
    assert f":{main}/health/ready" in " ".join(healthcheck_command())
    assert ("GET", "/metrics") in routes.METRICS_PORT and len(routes.METRICS_PORT) == 1


def _compose_defaults(env: dict[str, str]) -> dict[str, str]:
    """A replica's environment as compose sets it with no variable given: `${X:-d}` is d."""
    return {name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value) for name, value in env.items()}


def test_compose_config_shares_the_compose_stores(compose: dict[str, Any]) -> None:
    replica = _compose_defaults(compose["services"]["savegate-1"]["environment"])
    config = load_config(str(DEPLOY / "savegate.yaml"), replica)
    # No password in the URL (PGPASSWORD's), the compose services' user, host and database.
    database = re.match(
        r"postgresql\+asyncpg://(\w+)@([\w-]+):5432/(\w+)$", config.database_url or ""
    )
    assert database, config.database_url
    postgres = compose["services"]["postgres"]["environment"]
    assert database.groups() == (postgres["POSTGRES_USER"], "postgres", postgres["POSTGRES_DB"])
    # Redis's password comes with its URL from the environment, and is the server's own.
    assert "redis_url" not in yaml.safe_load((DEPLOY / "savegate.yaml").read_text())
    redis_url = re.match(r"redis://:([^@]+)@redis:6379/\d+$", config.redis_url or "")
    assert redis_url, config.redis_url
    server = _compose_defaults({"command": " ".join(compose["services"]["redis"]["command"])})
    assert f"--requirepass {redis_url.group(1)}" in server["command"]
    assert redis_url.group(1) in config.upstream_secrets()


def test_compose_sample_provider_validates_once_uncommented(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "savegate.yaml").read_text()
    block = re.search(r"^# providers:\n((?:#   .*\n)+)", text, re.M)
    assert block, "the commented provider example is gone"
    uncommented = "providers:\n" + re.sub(r"^# ", "", block.group(1), flags=re.M)
    providers = yaml.safe_load(uncommented)["providers"]
    Config.model_validate({"providers": providers})
    for provider in providers.values():
        assert provider["api_key_env"] in compose["services"]["savegate-1"]["environment"]


@pytest.mark.skipif(
    not shutil.which("docker-compose") and not os.environ.get("CI"),
    reason="docker-compose not installed (make test installs it)",
)
def test_compose_file_is_valid_for_docker_compose() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "docker-compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# --- Helm chart ----------------------------------------------------------------------


# Test dependencies (pyproject's `test` extra, so `make test` has them): Helm's engine, and
# Kubernetes' schemas. Without them (an old virtualenv) only the chart's tests skip; in CI
# they must be there.
def tool(module: str) -> Any:
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module}: pip install -e '.[test]'")


def render(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The chart's manifests for `values`, by kind."""
    with tool("helm_python").Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name="prod", namespace="llm")
    kinds: dict[str, list[dict[str, Any]]] = {}
    for name, text in files.items():
        if name.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def one(kinds: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    (doc,) = kinds[kind]
    return doc


def one_config(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(one(kinds, "ConfigMap")["data"]["savegate.yaml"])
    return config


def container(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (only,) = one(kinds, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def test_chart_lints_clean() -> None:
    report = tool("helm_python").lint(str(CHART), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 1: info


@pytest.mark.parametrize("kube", ["1.29.0", "1.37.0"])
def test_chart_manifests_match_the_kubernetes_schema(kube: str) -> None:
    """Strict: an unknown field (a misspelt probe, a misplaced key) fails too."""
    values = {"ingress": {"enabled": True, "tls": [{"secretName": "tls", "hosts": ["a.b"]}]}}
    kinds = render({**values, "secret": {"env": {"OPENAI_API_KEY": "sk"}}})
    assert len(kinds) == 7
    for docs in kinds.values():
        for doc in docs:
            tool("kubernetes_validate").validate(doc, kube, strict=True)


def test_chart_probes_health_and_drains_before_it_is_killed() -> None:
    kinds = render()
    pod = one(kinds, "Deployment")["spec"]["template"]["spec"]
    app = container(kinds)
    paths = {"startupProbe": "/health/live", "readinessProbe": "/health/ready"}
    paths["livenessProbe"] = "/health/live"  # a pod that cannot reach its stores lives on
    for probe, path in paths.items():
        assert app[probe]["httpGet"] == {"path": path, "port": "http"}, probe
        assert routes.find("GET", path) is not None, path
    ports = {port["name"]: port["containerPort"] for port in app["ports"]}
    assert ports["http"] == build_parser().parse_args(entrypoint()[1:]).port
    sleep = app["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = Config.model_validate(one_config(kinds)).server.shutdown_grace_seconds
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + grace + SUPERVISOR_BACKSTOP
    # Liveness gives up later than a drain lasts.
    live = app["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > grace + SUPERVISOR_BACKSTOP
    strategy = one(kinds, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_chart_grace_period_follows_the_configured_drain() -> None:
    kinds = render({"config": {"server": {"shutdown_grace_seconds": 90.5}}})
    pod = one(kinds, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 91 + SUPERVISOR_BACKSTOP + 10


def test_chart_runs_non_root_and_read_only() -> None:
    kinds = render()
    pod = one(kinds, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    app = container(kinds)
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    assert app["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in app["volumeMounts"]}
    assert {"/etc/savegate", "/var/lib/savegate", "/tmp"} <= mounts


def test_chart_config_is_the_values_config_and_valid() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    kinds = render()
    config = one_config(kinds)
    assert config == {**values["config"], "metrics": {"port": values["metrics"]["port"]}}
    parsed = Config.model_validate(config)
    assert (parsed.database_url or "").startswith("postgresql+asyncpg://")
    assert parsed.redis_url
    # Mounted where the image's entry point reads it.
    app = container(kinds)
    pod = one(kinds, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == one(kinds, "ConfigMap")["metadata"]["name"]
    (mount,) = [m for m in app["volumeMounts"] if m["name"] == "config"]
    args = build_parser().parse_args([*entrypoint()[1:], *app["args"]])
    assert args.config == mount["mountPath"] + "/savegate.yaml"
    assert args.workers == values["workers"]
    annotations = one(kinds, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= annotations.keys()


def test_chart_workers_come_from_values() -> None:
    assert container(render({"workers": "auto"}))["args"] == ["--workers", "auto"]
    assert container(render({"workers": 4}))["args"] == ["--workers", "4"]


def test_chart_upstream_keys_come_from_a_secret() -> None:
    kinds = render({"secret": {"env": {"OPENAI_API_KEY": "sk-test", "PGPASSWORD": "pw"}}})
    secret = one(kinds, "Secret")
    assert secret["stringData"] == {"OPENAI_API_KEY": "sk-test", "PGPASSWORD": "pw"}
    assert container(kinds)["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert "sk-test" not in json.dumps(one(kinds, "ConfigMap"))

    theirs = render({"secret": {"existingSecret": "llm-keys"}})
    assert "Secret" not in theirs
    assert container(theirs)["envFrom"] == [{"secretRef": {"name": "llm-keys"}}]


def test_chart_service_pdb_and_hpa_select_the_replicas() -> None:
    kinds = render()
    deployment = one(kinds, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = services(kinds)[0]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = one(kinds, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    hpa = one(kinds, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    fixed = render({"autoscaling": {"enabled": False}, "replicaCount": 3})
    assert "HorizontalPodAutoscaler" not in fixed
    assert one(fixed, "Deployment")["spec"]["replicas"] == 3


def test_chart_ingress_streams_server_sent_events() -> None:
    assert "Ingress" not in render()
    kinds = render({"ingress": {"enabled": True, "annotations": {"team": "llm"}}})
    ingress = one(kinds, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 3600
    assert int(annotations[prefix + "proxy-send-timeout"]) >= 3600
    assert annotations["team"] == "llm"
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": services(kinds)[0]["metadata"]["name"], "port": {"name": "http"}}


def services(kinds: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The main Service and the metrics one."""
    (main,) = [s for s in kinds["Service"] if not s["metadata"]["name"].endswith("-metrics")]
    (metrics,) = [s for s in kinds["Service"] if s["metadata"]["name"].endswith("-metrics")]
    return main, metrics


def test_chart_serves_metrics_on_a_port_of_its_own() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]
    assert values["enabled"] and not values["serviceMonitor"]["enabled"]
    kinds = render()
    port = values["port"]
    # The gateway's metrics.port, beside its main one (which the probes keep).
    config = Config.model_validate(one_config(kinds))
    app = container(kinds)
    main = build_parser().parse_args([*entrypoint()[1:], *app["args"]]).port
    assert config.metrics.enabled and config.metrics.port == port != main
    assert {"name": "metrics", "containerPort": port} in app["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["port"] == "http", probe
    service, metrics = services(kinds)
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]  # never the keyless port
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}]
    assert metrics["spec"]["selector"] == service["spec"]["selector"]
    pod = one(kinds, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert pod["prometheus.io/scrape"] == "true"
    assert pod["prometheus.io/port"] == str(port)
    assert ("GET", pod["prometheus.io/path"]) in routes.METRICS_PORT
    assert "ServiceMonitor" not in kinds
    # A port of the operator's choosing follows everywhere; their own metrics fields stay.
    moved = render({"metrics": {"port": 9100}, "config": {"metrics": {"enabled": True}}})
    assert one_config(moved)["metrics"] == {"enabled": True, "port": 9100}
    assert {"name": "metrics", "containerPort": 9100} in container(moved)["ports"]
    assert services(moved)[1]["spec"]["ports"][0]["port"] == 9100
    annotations = one(moved, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9100"


def test_chart_without_the_metrics_port_exposes_none() -> None:
    kinds = render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})
    assert "metrics" not in one_config(kinds)
    assert [port["name"] for port in container(kinds)["ports"]] == ["http"]
    assert [port["name"] for port in one(kinds, "Service")["spec"]["ports"]] == ["http"]
    assert "-metrics" not in one(kinds, "Service")["metadata"]["name"]
    annotations = one(kinds, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(name.startswith("prometheus.io/") for name in annotations)
    assert "ServiceMonitor" not in kinds


def test_chart_service_monitor_scrapes_the_services_metrics_port() -> None:
    monitor = {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}}
    kinds = render({"metrics": {"serviceMonitor": monitor}})
    found = one(kinds, "ServiceMonitor")
    assert found["apiVersion"] == "monitoring.coreos.com/v1"
    assert found["metadata"]["labels"]["release"] == "prometheus"
    service, metrics = services(kinds)
    selector = found["spec"]["selector"]["matchLabels"].items()
    assert selector <= metrics["metadata"]["labels"].items()
    assert not selector <= service["metadata"]["labels"].items()
    service = metrics
    (endpoint,) = found["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }


def test_chart_refuses_a_metrics_port_the_gateway_would_refuse() -> None:
    helm_python = tool("helm_python")
    with pytest.raises(helm_python.HelmRenderError, match=r"metrics\.port must differ"):
        render({"metrics": {"port": 8000}})
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.metrics\.enabled"):
        render({"config": {"metrics": {"enabled": False}}})
    kinds = render({"metrics": {"enabled": False}, "config": {"metrics": {"enabled": False}}})
    assert one_config(kinds)["metrics"] == {"enabled": False}


def test_chart_refuses_replicas_that_would_not_share_the_stores() -> None:
    helm_python = tool("helm_python")
    sqlite = {"config": {"database_url": None}}
    with pytest.raises(helm_python.HelmRenderError, match="database_url"):
        render(sqlite)
    with pytest.raises(helm_python.HelmRenderError, match="redis_url"):
        render({"config": {"redis_url": None}})
    # The URLs from the Secret do as well.
    from_secret = {"SAVEGATE_REDIS_URL": "redis://:pw@redis:6379/0"}
    from_secret["SAVEGATE_DATABASE_URL"] = "postgresql+asyncpg://u:pw@db/savegate"
    kinds = render(
        {"config": {"redis_url": None, "database_url": None}, "secret": {"env": from_secret}}
    )
    assert "redis_url" not in one_config(kinds)
    single = render({**sqlite, "autoscaling": {"enabled": False}, "replicaCount": 1})
    assert "database_url" not in one_config(single)


def test_chart_readme_documents_every_top_level_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [key for key in values if f"`{key}" not in readme]
    assert missing == [], f"chart README does not describe {missing}"


def test_deploy_docs_name_real_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## Run it on a cluster")[2]
    assert section, "README has no 'Run it on a cluster' section"
    for needed in ("docker compose", "helm install", "--workers auto", "PostgreSQL", "Redis"):
        assert needed in section, needed
    for line in re.findall(r"^docker compose (.*)$", section, re.M):
        assert "-f deploy/docker-compose.yaml" in line or "--project-directory" in line, line
    assert "deploy/helm/savegate" in section and CHART.is_dir()
