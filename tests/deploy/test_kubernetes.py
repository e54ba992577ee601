"""deploy/kubernetes/: valid manifests that run exactly what the Procfile runs.

Built-in kinds are validated strictly (unknown fields are errors) against the Kubernetes
OpenAPI schemas bundled by `kubernetes-validate`. The operators' kinds (RabbitmqCluster,
CloudNativePG's Cluster, KEDA's ScaledObject and TriggerAuthentication, the Prometheus Operator's
PrometheusRule) have no bundled schema: their tests check the fields this deployment relies on
(the PrometheusRule's in tests/deploy/test_prometheus.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from fitness import broker_users, topology
from tests.support import ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
OPERATOR_KINDS = {"RabbitmqCluster", "Cluster", "ScaledObject", "TriggerAuthentication", "PrometheusRule",
                  "User", "Permission", "PodMonitor"}
# Secrets the operators create: CloudNativePG (<cluster>-app) and the RabbitMQ operator (<cluster>-default-user)
OPERATOR_SECRETS = {"fitness-db-app": {"uri"}, "fitness-rabbitmq-default-user": {"username", "password"}}


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def queues_of(command: list[str]) -> list[str]:
    return command[command.index("-Q") + 1].split(",")


@pytest.mark.parametrize("document", [
    pytest.param(doc, id=f"{path}:{doc['kind']}/{doc['metadata']['name']}")
    for path, doc in documents() if doc["kind"] not in OPERATOR_KINDS
])
def test_every_built_in_manifest_is_valid_strictly(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "fitness"


def program(words: list[str]) -> list[str]:
    """A command without its environment assignments and shell wrapping: the program and its first arguments."""
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] == "exec"):
        words = words[1:]
    if words[:2] == ["nice", "-n"]:  # a CPU priority on a shared host; pods get CPU requests instead
        words = words[3:]
    return words[:3]


def test_every_procfile_process_has_a_deployment_running_the_same_program():
    deployments = of_kind("Deployment")
    assert set(deployments) == set(procfile())
    for name, line in procfile().items():
        words = shlex.split(line.split("&&")[-1])
        command = container(deployments[name])["command"]
        assert program(command) == program(words), name  # e.g. ["celery", "-A", "fitness"]
        if program(words)[0] == "celery":  # and the same Celery subcommand: worker, beat or flower
            assert f" {words[words.index('fitness') + 1]} " in f" {' '.join(command)} ", name


def test_every_worker_consumes_only_the_queues_of_its_pool():
    deployments = of_kind("Deployment")
    for queue in topology.WORK_QUEUES:
        command = container(deployments[queue.process])["command"]
        assert queues_of(command) == topology.queues_for_process(queue.process)
        assert queues_of(command) == queues_of(shlex.split(procfile()[queue.process].split(" celery ", 1)[-1]))


def test_workers_get_a_grace_period_longer_than_their_longest_task():
    from ml.jobs import RETRAIN_TIME_LIMIT

    grace = {name: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
             for name, d in of_kind("Deployment").items()}
    assert grace["worker-ai"] > 60  # ml.read_task_photo's hard time limit
    assert grace["worker-mlops"] > RETRAIN_TIME_LIMIT
    assert grace["worker-alerts"] >= 30 and grace["worker-notify"] >= 30


def test_workers_have_file_probes_and_resources():
    for name, deployment in of_kind("Deployment").items():
        spec = container(deployment)
        assert spec["resources"]["requests"] and spec["resources"]["limits"], name
        if name.startswith("worker-"):
            assert spec["readinessProbe"]["exec"]["command"][-1] == "/tmp/probes/ready"
            assert "/tmp/probes/alive" in spec["livenessProbe"]["exec"]["command"][-1]
            assert any(m["mountPath"] == "/tmp/probes" for m in spec["volumeMounts"])
    web = container(of_kind("Deployment")["web"])
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ai_memory = container(of_kind("Deployment")["worker-ai"])["resources"]["limits"]["memory"]
    assert ai_memory.endswith("Gi")  # torch and a model need room


def test_every_process_with_counters_is_scraped_where_it_serves_them():
    config = of_kind("ConfigMap")["fitness-config"]["data"]
    exporter_port = int(config["METRICS_EXPORTER_PORT"])
    for name, deployment in of_kind("Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if name == "web":  # GET /metrics of the app, with the queue and outbox gauges
            expected = container(deployment)["ports"][0]["containerPort"]
        elif name.startswith("worker-") or name in ("relay", "dead-letters"):  # observability/exporter.py
            expected = exporter_port
            assert {"name": "metrics", "containerPort": exporter_port} in container(deployment)["ports"], name
        else:
            continue
        assert annotations.get("prometheus.io/scrape") == "true", name
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(expected), "/metrics")


def test_every_worker_pool_and_the_web_have_a_disruption_budget():
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in of_kind("PodDisruptionBudget").values()
    }
    assert {"web", "worker-ai", "worker-mlops", "worker-alerts", "worker-notify", "worker-audit",
            "fitness-rabbitmq"} <= budgets


def test_keda_scales_each_worker_pool_on_its_queue_over_http():
    scaled = of_kind("ScaledObject")
    assert set(scaled) == {"worker-ai", "worker-mlops", "worker-alerts", "worker-notify", "worker-audit"}
    for name, item in scaled.items():
        assert item["apiVersion"] == "keda.sh/v1alpha1"
        assert item["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = item["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["protocol"] == "http"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["queueName"] in topology.queues_for_process(name)
        assert trigger["authenticationRef"]["name"] in of_kind("TriggerAuthentication")
        assert 1 <= item["spec"]["minReplicaCount"] <= item["spec"]["maxReplicaCount"]
    assert scaled["worker-alerts"]["spec"]["minReplicaCount"] >= 2
    assert scaled["worker-ai"]["spec"]["minReplicaCount"] >= 3


def test_rabbitmq_has_three_nodes_and_postgres_a_cnpg_cluster():
    (rabbit,) = of_kind("RabbitmqCluster").values()
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbit["spec"]["replicas"] == 3
    assert "consumer_timeout" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    # pinned: the major version decides how setup_broker declares the dead-letter queues
    assert re.fullmatch(r"rabbitmq:4\.\d+\.\d+-management", rabbit["spec"]["image"])
    (database,) = of_kind("Cluster").values()
    assert database["apiVersion"] == "postgresql.cnpg.io/v1"
    assert database["spec"]["bootstrap"]["initdb"]["database"] == "fitness"


def test_every_referenced_secret_and_config_map_exists():
    secrets = {name: set(doc.get("stringData", {}) | doc.get("data", {})) for name, doc in of_kind("Secret").items()}
    secrets.update(OPERATOR_SECRETS)
    config_maps = set(of_kind("ConfigMap"))
    text = "\n".join(path.read_text() for path in MANIFESTS.glob("*.yaml"))
    for _, document in documents():
        for ref in _walk(document, "secretKeyRef"):
            assert ref["key"] in secrets[ref["name"]], ref
        for ref in _walk(document, "configMapRef"):
            assert ref["name"] in config_maps
        for ref in _walk(document, "secretRef"):
            assert ref["name"] in secrets
        for volume in _walk(document, "volumes"):
            for item in volume:
                if "secret" in item:
                    assert item["secret"]["secretName"] in secrets, item
    for ref in _walk(of_kind("TriggerAuthentication")["fitness-rabbitmq"], "secretTargetRef"):
        for item in ref:
            assert item["key"] in secrets[item["name"]]
    assert "CHANGE-ME" in text  # placeholders, never real secrets


def test_jobs_migrate_and_declare_the_broker():
    jobs = {name: container(job)["command"] for name, job in of_kind("Job").items()}
    assert jobs == {"migrate": ["sh", "-c", "python manage.py migrate --noinput && python manage.py createcachetable"],
                    "setup-broker": ["python", "manage.py", "setup_broker"]}


def _walk(node, key):
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from _walk(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def test_the_dockerfile_installs_the_pinned_torch_from_the_cpu_index():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert re.search(r"USER 10001", dockerfile)
    assert "useradd --uid 10001" in dockerfile  # the non-root user the pods run as
    assert (ROOT / ".dockerignore").exists()
    assert Path(ROOT / "requirements.txt").read_text().count("torch==") == 1


# --- network-policy.yaml: who may connect to whom ------------------------------------------

INGRESS_CONTROLLER = {"kubernetes.io/metadata.name": "ingress-nginx"}
PROMETHEUS = ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"})


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In) against pod labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression  # the only operator these manifests use
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels() -> dict[str, dict]:
    """Every pod of ours (Deployments and Jobs) and of the operators' clusters, by name: its labels."""
    pods = {name: doc["spec"]["template"]["metadata"]["labels"]
            for kind in ("Deployment", "Job") for name, doc in of_kind(kind).items()}
    pods["postgres"] = {"cnpg.io/cluster": "fitness-db"}  # CloudNativePG labels its instances so
    pods["rabbitmq"] = {"app.kubernetes.io/name": "fitness-rabbitmq"}  # the RabbitMQ operator's nodes
    return pods


def policies_of(labels: dict) -> list[dict]:
    return [p for p in of_kind("NetworkPolicy").values() if selects(p["spec"]["podSelector"], labels)]


def allowed_sources(labels: dict, port: int) -> list[dict]:
    """The `from` peers that may reach `port` of a pod with `labels` (a rule without ports allows every port)."""
    peers = []
    for policy in policies_of(labels):
        for rule in policy["spec"].get("ingress", []):
            if "ports" not in rule or any(p["port"] == port for p in rule["ports"]):
                assert rule.get("from"), f"{policy['metadata']['name']}: a rule open to everyone"
                peers += rule["from"]
    return peers


def is_peer(peer: dict, *, namespace: dict | None = None, pod: dict | None = None) -> bool:
    """Whether `peer` (a NetworkPolicyPeer) lets in a pod with labels `pod` in the namespace `namespace`
    (None: this namespace)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if namespace is None or not selects(peer["namespaceSelector"], namespace):
            return False
    elif namespace is not None:
        return False
    return "podSelector" not in peer or (pod is not None and selects(peer["podSelector"], pod))


def test_every_pod_is_selected_by_a_network_policy_so_nothing_else_reaches_it():
    for name, labels in pod_labels().items():
        policies = policies_of(labels)
        assert policies, f"{name} is open to every pod of the cluster"
        assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in policies), name


def test_only_the_ingress_controller_and_prometheus_reach_the_web():
    web = pod_labels()["web"]
    port = container(of_kind("Deployment")["web"])["ports"][0]["containerPort"]
    peers = allowed_sources(web, port)
    assert any(is_peer(p, namespace=INGRESS_CONTROLLER) for p in peers)
    assert any(is_peer(p, namespace=PROMETHEUS[0], pod=PROMETHEUS[1]) for p in peers)
    assert all(is_peer(p, namespace=INGRESS_CONTROLLER) or is_peer(p, namespace=PROMETHEUS[0], pod=PROMETHEUS[1])
               for p in peers)
    # no pod of ours, and no other namespace's pods, reach it
    others = [labels for name, labels in pod_labels().items() if name != "web"]
    assert not any(is_peer(p, pod=labels) for p in peers for labels in others)
    assert not any(is_peer(p, namespace={"kubernetes.io/metadata.name": "default"}, pod={}) for p in peers)


def test_prometheus_scrapes_the_web_with_the_metrics_token_and_every_exporter():
    monitors = of_kind("PodMonitor")
    web = monitors["fitness-web"]["spec"]
    assert selects(web["selector"], pod_labels()["web"])
    (endpoint,) = web["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {"type": "Bearer",
                                         "credentials": {"name": "fitness-metrics", "key": "METRICS_TOKEN"}}
    assert "METRICS_TOKEN" in of_kind("Secret")["fitness-metrics"]["stringData"]
    exporters = monitors["fitness-exporters"]["spec"]
    exporter_port = int(of_kind("ConfigMap")["fitness-config"]["data"]["METRICS_EXPORTER_PORT"])
    for name, doc in of_kind("Deployment").items():
        if {"name": "metrics", "containerPort": exporter_port} in container(doc).get("ports", []):
            assert selects(exporters["selector"], pod_labels()[name]), f"nothing scrapes the exporter of {name}"


def test_only_prometheus_reaches_the_exporter_ports():
    exporter_port = int(of_kind("ConfigMap")["fitness-config"]["data"]["METRICS_EXPORTER_PORT"])
    exporting = {name: doc for name, doc in of_kind("Deployment").items()
                 if {"name": "metrics", "containerPort": exporter_port} in container(doc).get("ports", [])}
    assert {"worker-ai", "worker-mlops", "worker-alerts", "worker-notify", "worker-audit", "relay",
            "dead-letters"} <= set(exporting)
    for name in exporting:
        peers = allowed_sources(pod_labels()[name], exporter_port)
        assert peers and all(is_peer(p, namespace=PROMETHEUS[0], pod=PROMETHEUS[1]) for p in peers), name
        assert not any(is_peer(p, namespace=PROMETHEUS[0], pod={"app.kubernetes.io/name": "grafana"}) for p in peers)
        assert not any(is_peer(p, pod=labels) for p in peers for labels in pod_labels().values()), name


def test_the_processes_reach_postgresql_and_rabbitmq_and_nothing_else_of_ours_is_reachable():
    pods = pod_labels()
    ours = {name: labels for name, labels in pods.items() if name not in ("postgres", "rabbitmq")}
    for name, labels in ours.items():
        doc = (of_kind("Deployment") | of_kind("Job"))[name]
        env = {item["name"] for item in container(doc).get("env", [])}
        if "DATABASE_URL" in env:
            assert any(is_peer(p, pod=labels) for p in allowed_sources(pods["postgres"], 5432)), name
        if "CELERY_BROKER_URL" in env:
            assert any(is_peer(p, pod=labels) for p in allowed_sources(pods["rabbitmq"], 5672)), name
        # and no process of ours accepts a connection from another of ours
        for target, target_labels in ours.items():
            for port in (8000, 5555, 9808):
                assert not any(is_peer(p, pod=labels) for p in allowed_sources(target_labels, port)), (name, target)
    management = allowed_sources(pods["rabbitmq"], 15672)
    assert any(is_peer(p, pod=pods["web"]) for p in management)  # the queue depths of /metrics
    assert not any(is_peer(p, pod=pods["worker-ai"]) for p in management)


# --- least privilege (docs/operating.md, "Kubernetes: users, secrets, security context") -------
def _rabbitmq(process: str) -> set[tuple[str, str]]:
    secret = broker_users.broker_user(process).secret_name
    return {(secret, "username"), (secret, "password")}


DATABASE = {("fitness-db-app", "uri")}
S3 = {("fitness-s3", "AWS_ACCESS_KEY_ID"), ("fitness-s3", "AWS_SECRET_ACCESS_KEY")}
FCM = {("fitness-fcm", "service-account.json")}
# What each process uses, read from the code: the web guards
# /metrics (METRICS_TOKEN) and stores photos (S3); the AI and MLOps pools read photos and models
# (S3); the alert and recommendation pools push (FCM); Flower needs no database; migrate no broker;
# setup_broker no database.
NEEDS: dict[str, set[tuple[str, str]]] = {
    "web": DATABASE | _rabbitmq("web") | S3 | {("fitness-metrics", "METRICS_TOKEN")},
    "worker-ai": DATABASE | _rabbitmq("worker-ai") | S3,
    "worker-mlops": DATABASE | _rabbitmq("worker-mlops") | S3,
    "worker-alerts": DATABASE | _rabbitmq("worker-alerts") | FCM,
    "worker-notify": DATABASE | _rabbitmq("worker-notify") | FCM,
    "worker-audit": DATABASE | _rabbitmq("worker-audit"),
    "relay": DATABASE | _rabbitmq("relay"),
    "beat": DATABASE | _rabbitmq("beat"),
    "dead-letters": DATABASE | _rabbitmq("dead-letters"),
    "flower": _rabbitmq("flower") | {("fitness-flower", "FLOWER_BASIC_AUTH")},
    "migrate": DATABASE,
    "setup-broker": _rabbitmq("setup-broker"),
}
# Every process loads the settings, which in production refuse to start without the secret key.
for _needs in NEEDS.values():
    _needs.add(("fitness-django", "DJANGO_SECRET_KEY"))


def pods() -> dict[str, dict]:
    """Every Deployment's and Job's pod template, by name."""
    return {name: doc["spec"]["template"] for kind in ("Deployment", "Job") for name, doc in of_kind(kind).items()}


def secret_keys_of(pod: dict) -> set[tuple[str, str]]:
    secrets = {name: set(doc.get("stringData", {}) | doc.get("data", {})) for name, doc in of_kind("Secret").items()}
    used = {(ref["name"], ref["key"]) for ref in _walk(pod, "secretKeyRef")}
    for volume in pod["spec"].get("volumes", []):
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            items = volume["secret"].get("items")
            used |= {(name, item["key"]) for item in items} if items else {(name, key) for key in secrets[name]}
    return used


def test_no_pod_takes_a_whole_secret():
    for name, pod in pods().items():
        assert not list(_walk(pod, "secretRef")), f"{name} takes a whole Secret (envFrom secretRef)"


def test_each_pod_mounts_only_the_secret_keys_its_process_uses():
    assert set(pods()) == set(NEEDS)
    for name, pod in pods().items():
        assert secret_keys_of(pod) == NEEDS[name], name


def test_each_process_connects_to_rabbitmq_as_its_own_user():
    for name, pod in pods().items():
        env = {item["name"]: item for item in container({"spec": {"template": pod}})["env"]}
        if name == "migrate":
            assert "CELERY_BROKER_URL" not in env
            continue
        secret = broker_users.broker_user(name).secret_name
        assert env["RABBITMQ_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == secret, name
        assert env["RABBITMQ_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret, name
        assert env["CELERY_BROKER_URL"]["value"].startswith("amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@")
    (auth,) = of_kind("TriggerAuthentication").values()
    keda = broker_users.broker_user("keda")
    (target,) = auth["spec"]["secretTargetRef"]
    assert target["name"] == keda.secret_name
    host = of_kind("Secret")[keda.secret_name]["stringData"]["host"]
    assert host.startswith(f"http://{keda.name}:")


def test_the_rabbitmq_users_are_generated_from_the_permission_table():
    from messaging.management.commands.broker_users import kubernetes_yaml

    assert (MANIFESTS / "rabbitmq-users.yaml").read_text() == kubernetes_yaml(), (
        "regenerate: python manage.py broker_users --format kubernetes > deploy/kubernetes/rabbitmq-users.yaml")
    users = of_kind("User")
    secrets = of_kind("Secret")
    assert set(users) == {user.name for user in broker_users.BROKER_USERS}
    for user in broker_users.BROKER_USERS:
        spec = users[user.name]["spec"]
        credentials = secrets[spec["importCredentialsSecret"]["name"]]["stringData"]
        assert credentials["username"] == user.name  # the Secret names the user the table means
        assert "CHANGE-ME" in credentials["password"]
        assert of_kind("Permission")[user.name]["spec"]["permissions"] == user.permissions()
    assert not any(user.configure != broker_users.NOTHING for user in broker_users.BROKER_USERS
                   if user.process in ("web", "relay", "beat", "dead-letters", "keda")), "publishers declare nothing"


def test_every_container_runs_unprivileged_on_a_read_only_root_filesystem():
    config = of_kind("ConfigMap")["fitness-config"]["data"]
    for name, pod in pods().items():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name  # the Dockerfile's user
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for each in spec["containers"]:
            assert each["securityContext"] == {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            }, name
            mounts = {mount["mountPath"]: mount["name"] for mount in each.get("volumeMounts", [])}
            volumes = {volume["name"]: volume for volume in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name  # what the process writes
    # everything a process writes at run time is under /tmp (static files are collected at build)
    for variable in ("PROMETHEUS_MULTIPROC_DIR", "CELERY_PROBE_DIR"):
        assert config[variable].startswith("/tmp/"), variable
    assert "AWS_STORAGE_BUCKET_NAME" in config  # photos and models in S3, never under MEDIA_ROOT


def test_every_image_is_pinned_by_version():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (app,) = kustomization["images"]
    assert app["name"] == "fitness" and re.fullmatch(r"\d+\.\d+\.\d+", app["newTag"]), app
    images = [image for _, doc in documents() for image in _walk(doc, "image")]
    images += [image for _, doc in documents() for image in _walk(doc, "imageName")]
    assert "fitness" in images
    for image in images:
        if image == "fitness":  # kustomize gives it the tag above
            continue
        name, _, tag = image.rpartition(":")
        assert name and re.match(r"\d+\.\d+", tag) and "latest" not in tag, image
    assert not re.search(r":latest\b|newTag: \"?latest", "\n".join(p.read_text() for p in MANIFESTS.glob("*.yaml")))
