"""Validates rendered Kubernetes manifests (and the image's Dockerfile).

Run by scripts/validate-manifests.sh, which installs the pinned tools and
renders the kustomize trees; not meant to be run by hand.

Every document is checked twice:

1. against the Kubernetes OpenAPI schemas of each requested version, strict
   (an unknown or misspelt field is an error, and so is a kind or
   apiVersion the version does not know);
2. against the rules a deployment of Engram relies on and the schemas cannot
   express: references resolve inside the render (Services and budgets
   select pods, probes and Services name real container ports, ConfigMaps,
   Secrets, volumes and autoscaler targets exist), pods run restricted
   (non-root, read-only root, no privilege escalation, no capabilities,
   RuntimeDefault seccomp), every container has requests, limits, probes
   and a pinned image, autoscaled workloads leave `replicas` to the
   autoscaler, budgets leave a pod to evict, and an engram pod's grace
   period covers its preStop sleep plus the drain its configuration allows.

Prints one line per render and a summary; every failure names the render,
the document (Kind/name) and what is wrong. Exits 1 on any failure.
"""

import argparse
import functools
import json
import os
import re
import sys

import yaml
from kubernetes_validate import utils as kv

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
ENGRAM_ROLES = ("serve", "ingest", "recall", "enrich")
# engram's own defaults (crates/engram-server/src/config.rs), used when the
# ConfigMap does not set the variable.
DEFAULT_SHUTDOWN_GRACE_SECS = 20
DEFAULT_DRAIN_TIMEOUT_SECS = 30
GRACE_MARGIN_SECS = 5

# The schema files are large and kubernetes-validate reads them on every
# call: read each once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def kname(doc):
    meta = doc.get("metadata") or {}
    return "%s/%s" % (doc.get("kind", "?"), meta.get("name", "?"))


class Render:
    """The documents of one rendered kustomization (or plain directory)."""

    def __init__(self, label, docs):
        self.label = label
        self.docs = docs
        self.failures = []
        self.by_kind = {}
        for d in docs:
            meta = d.get("metadata") or {}
            self.by_kind.setdefault(d.get("kind"), {})[meta.get("name")] = d

    def fail(self, doc, message):
        self.failures.append("%s: %s: %s" % (self.label, kname(doc), message))

    def get(self, kind, name):
        return self.by_kind.get(kind, {}).get(name)

    def workloads(self):
        for kind in WORKLOADS:
            yield from self.by_kind.get(kind, {}).values()


def pod_template(doc):
    return ((doc.get("spec") or {}).get("template")) or {}


def pod_labels(doc):
    return (pod_template(doc).get("metadata") or {}).get("labels") or {}


def pod_spec(doc):
    return pod_template(doc).get("spec") or {}


def containers(spec, init=True):
    out = list(spec.get("containers") or [])
    if init:
        out += spec.get("initContainers") or []
    return out


def selects(selector, labels):
    """Whether a LabelSelector selects `labels`; an empty one counts as
    selecting nothing (it would select every pod of the namespace)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) \
                or (op == "NotIn" and present and labels.get(key) in values) \
                or (op == "Exists" and not present) \
                or (op == "DoesNotExist" and present):
            return False
    return True


def service_selects(selector, labels):
    """Whether a Service's selector (a plain label map) selects `labels`."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def schema_check(render, doc, versions):
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(document)"
            render.fail(doc, "Kubernetes %s schema: %s: %s" % (e.version, path, e.message))
        except kv.SchemaNotFoundError as e:
            render.fail(doc, e.message)
        except (KeyError, TypeError) as e:
            render.fail(doc, "not a Kubernetes object (%s missing)" % e)


def image_pinned(image):
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def is_engram(image):
    """Whether `image` is the engram image (any registry, tag or digest)."""
    return re.split(r"[:@]", (image or "").rsplit("/", 1)[-1])[0] == "engram"


def probe_port_ok(probe, container):
    ports = container.get("ports") or []
    names = {p.get("name") for p in ports}
    numbers = {p.get("containerPort") for p in ports}
    for handler in ("grpc", "httpGet", "tcpSocket"):
        if handler in probe:
            port = probe[handler].get("port")
            return port in names if isinstance(port, str) else port in numbers
    return True


def config_value(render, container, key):
    """The value of environment variable `key` as the container sees it:
    its own env, else a ConfigMap it takes whole (envFrom)."""
    for e in container.get("env") or []:
        if e.get("name") == key and "value" in e:
            return e["value"]
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        cm = ref and render.get("ConfigMap", ref.get("name"))
        if cm and key in (cm.get("data") or {}):
            return cm["data"][key]
    return None


def prestop_sleep(container):
    cmd = ((((container.get("lifecycle") or {}).get("preStop")) or {}).get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0].rsplit("/", 1)[-1] == "sleep" and str(cmd[1]).isdigit():
        return int(cmd[1])
    sleep = (((container.get("lifecycle") or {}).get("preStop")) or {}).get("sleep")
    return int(sleep["seconds"]) if sleep else 0


def check_refs(render, doc, spec):
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    claim_names = {(c.get("metadata") or {}).get("name") for c in (doc.get("spec") or {}).get("volumeClaimTemplates") or []}
    for v in volumes.values():
        for kind, field, key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName"),
                                 ("PersistentVolumeClaim", "persistentVolumeClaim", "claimName")):
            ref = v.get(field)
            if ref and not ref.get("optional") and not render.get(kind, ref.get(key)):
                render.fail(doc, "volume %s: %s %s is not in this render" % (v.get("name"), kind, ref.get(key)))
    sa = spec.get("serviceAccountName")
    if sa and sa != "default" and not render.get("ServiceAccount", sa):
        render.fail(doc, "ServiceAccount %s is not in this render" % sa)
    for c in containers(spec):
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes and m.get("name") not in claim_names:
                render.fail(doc, "container %s mounts unknown volume %s" % (c.get("name"), m.get("name")))
        for src in c.get("envFrom") or []:
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = src.get(field)
                if ref and not ref.get("optional") and not render.get(kind, ref.get("name")):
                    render.fail(doc, "container %s: envFrom %s %s is not in this render" % (c.get("name"), kind, ref.get("name")))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = vf.get(field)
                if not ref or ref.get("optional"):
                    continue
                obj = render.get(kind, ref.get("name"))
                keys = set((obj or {}).get("data") or {}) | set((obj or {}).get("stringData") or {})
                if obj is None:
                    render.fail(doc, "env %s: %s %s is not in this render" % (e.get("name"), kind, ref.get("name")))
                elif ref.get("key") not in keys:
                    render.fail(doc, "env %s: %s %s has no key %s" % (e.get("name"), kind, ref.get("name"), ref.get("key")))


def check_pod(render, doc, spec):
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        render.fail(doc, "pod securityContext.runAsNonRoot must be true")
    if psc.get("runAsUser") == 0:
        render.fail(doc, "pod securityContext.runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in containers(spec):
        name = c.get("name")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            render.fail(doc, "container %s: allowPrivilegeEscalation must be false" % name)
        if sc.get("readOnlyRootFilesystem") is not True:
            render.fail(doc, "container %s: readOnlyRootFilesystem must be true" % name)
        if sc.get("privileged"):
            render.fail(doc, "container %s: must not be privileged" % name)
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            render.fail(doc, "container %s: capabilities.drop must include ALL" % name)
        if ((sc.get("seccompProfile") or {}).get("type") or pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            render.fail(doc, "container %s: seccompProfile must be RuntimeDefault" % name)
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    render.fail(doc, "container %s: resources.%s.%s missing" % (name, part, r))
        image = c.get("image") or ""
        if not image_pinned(image):
            render.fail(doc, "container %s: image %r has no pinned tag or digest" % (name, image))
    for c in containers(spec, init=False):
        for kind in ("readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if not probe:
                render.fail(doc, "container %s: %s missing" % (c.get("name"), kind))
            elif not probe_port_ok(probe, c):
                render.fail(doc, "container %s: %s port is not a port of the container" % (c.get("name"), kind))
        for kind in ("startupProbe",):
            probe = c.get(kind)
            if probe and not probe_port_ok(probe, c):
                render.fail(doc, "container %s: %s port is not a port of the container" % (c.get("name"), kind))
    check_refs(render, doc, spec)


def check_engram_grace(render, doc, spec):
    """terminationGracePeriodSeconds >= preStop sleep + engram's drain + margin."""
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for c in containers(spec, init=False):
        args = c.get("args") or []
        if not args or args[0] not in ENGRAM_ROLES or not is_engram(c.get("image")):
            continue
        drain = int(config_value(render, c, "ENGRAM__SERVER__SHUTDOWN_GRACE_SECS") or DEFAULT_SHUTDOWN_GRACE_SECS)
        if args[0] in ("enrich", "serve"):
            drain = max(drain, int(config_value(render, c, "ENGRAM__ENRICH__DRAIN_TIMEOUT_SECS") or DEFAULT_DRAIN_TIMEOUT_SECS))
        need = prestop_sleep(c) + drain + GRACE_MARGIN_SECS
        if grace < need:
            render.fail(doc, "terminationGracePeriodSeconds %s < preStop sleep %s + drain %s + %s s margin"
                        % (grace, prestop_sleep(c), drain, GRACE_MARGIN_SECS))


def check_render(render, versions):
    seen = set()
    namespaces = set()
    for doc in render.docs:
        if not isinstance(doc, dict):
            render.failures.append("%s: a document is not a mapping" % render.label)
            continue
        meta = doc.get("metadata") or {}
        ident = (doc.get("apiVersion"), doc.get("kind"), meta.get("namespace"), meta.get("name"))
        if ident in seen:
            render.fail(doc, "defined twice")
        seen.add(ident)
        if doc.get("kind") != "Namespace":
            namespaces.add(meta.get("namespace"))
        schema_check(render, doc, versions)

    if len(namespaces) > 1:
        render.failures.append("%s: objects in several namespaces: %s" % (render.label, sorted(map(str, namespaces))))

    hpas = {}
    for hpa in render.by_kind.get("HorizontalPodAutoscaler", {}).values():
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        target = render.get(ref.get("kind"), ref.get("name"))
        if target is None:
            render.fail(hpa, "scaleTargetRef %s/%s is not in this render" % (ref.get("kind"), ref.get("name")))
            continue
        hpas[(ref.get("kind"), ref.get("name"))] = spec
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            render.fail(hpa, "minReplicas exceeds maxReplicas")
        if "replicas" in (target.get("spec") or {}):
            render.fail(target, "sets spec.replicas although %s scales it (re-applying would reset the scale)" % kname(hpa))
        for m in spec.get("metrics") or []:
            res = (m.get("resource") or {}).get("name")
            if m.get("type") == "Resource" and res:
                for c in containers(pod_spec(target), init=False):
                    if res not in ((c.get("resources") or {}).get("requests") or {}):
                        render.fail(hpa, "scales on %s but container %s of %s requests none" % (res, c.get("name"), kname(target)))

    for w in render.workloads():
        spec = pod_spec(w)
        if not selects((w.get("spec") or {}).get("selector"), pod_labels(w)):
            render.fail(w, "spec.selector does not select the pod template's labels")
        check_pod(render, w, spec)
        check_engram_grace(render, w, spec)
        if w.get("kind") == "StatefulSet":
            svc = render.get("Service", (w.get("spec") or {}).get("serviceName"))
            if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
                render.fail(w, "serviceName %s is not a headless Service of this render" % (w.get("spec") or {}).get("serviceName"))

    for svc in render.by_kind.get("Service", {}).values():
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        targets = [w for w in render.workloads() if service_selects(spec.get("selector"), pod_labels(w))]
        if not targets:
            render.fail(svc, "selector %s matches no pod template in this render" % spec.get("selector"))
            continue
        for p in spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            for w in targets:
                ports = [cp for c in containers(pod_spec(w), init=False) for cp in c.get("ports") or []]
                if not any(cp.get("name") == tp or cp.get("containerPort") == tp for cp in ports):
                    render.fail(svc, "port %s: targetPort %s is not a container port of %s" % (p.get("name"), tp, kname(w)))

    for pdb in render.by_kind.get("PodDisruptionBudget", {}).values():
        spec = pdb.get("spec") or {}
        if "minAvailable" in spec and "maxUnavailable" in spec:
            render.fail(pdb, "sets both minAvailable and maxUnavailable")
        targets = [w for w in render.workloads() if selects(spec.get("selector"), pod_labels(w))]
        if not targets:
            render.fail(pdb, "selector matches no pod template in this render")
        for w in targets:
            hpa = hpas.get((w.get("kind"), (w.get("metadata") or {}).get("name")))
            replicas = hpa.get("minReplicas", 1) if hpa else (w.get("spec") or {}).get("replicas", 1)
            if isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] >= replicas:
                render.fail(pdb, "minAvailable %s leaves no pod of %s (at least %s replicas) to evict: node drains would block"
                            % (spec["minAvailable"], kname(w), replicas))
            if spec.get("maxUnavailable") in (0, "0%"):
                render.fail(pdb, "maxUnavailable 0 blocks every node drain")


def check_dockerfile(path, toolchain, renders, shown):
    """The image the manifests run: parsed with BuildKit's own parser."""
    import dockerfile

    failures = []
    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        return ["%s: does not parse: %s" % (shown, e)], {}
    args, stages = {}, []
    known = {name.upper() for name in dockerfile.all_cmds()}
    for c in cmds:
        if c.cmd not in known:
            failures.append("%s:%d: unknown instruction %s" % (shown, c.start_line, c.cmd))
        if c.cmd == "ARG" and not stages:
            k, _, v = c.value[0].partition("=")
            args[k] = v
        elif c.cmd == "FROM":
            stages.append({"from": c.value[0], "name": c.value[2] if len(c.value) > 2 else None, "cmds": []})
        elif stages:
            stages[-1]["cmds"].append(c)
    channel = re.search(r'channel\s*=\s*"([^"]+)"', open(toolchain).read())
    if channel is None or args.get("RUST_VERSION") != channel.group(1):
        failures.append("%s: ARG RUST_VERSION=%s differs from rust-toolchain.toml (%s)" % (shown, args.get("RUST_VERSION"),
                                                                         channel and channel.group(1)))
    names = {s["name"] for s in stages}
    for s in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s["from"])
        if base not in names and not image_pinned(base):
            failures.append("%s: FROM %s is not pinned to a tag" % (shown, base))

    # The final stage, with what it inherits from the stages it builds on.
    by_name = {s["name"]: s for s in stages}
    chain, s = [], stages[-1]
    while s is not None:
        chain.insert(0, s)
        s = by_name.get(s["from"])
    env, user, entrypoint, exposed, copied = {}, None, None, set(), []
    for s in chain:
        for c in s["cmds"]:
            if c.cmd == "ENV":
                env.update(dict(zip(c.value[0::2], c.value[1::2])))
            elif c.cmd == "USER":
                user = c.value[0]
            elif c.cmd == "ENTRYPOINT":
                entrypoint = list(c.value)
            elif c.cmd == "EXPOSE":
                exposed |= {int(p.split("/")[0]) for p in c.value}
            elif c.cmd == "COPY":
                copied.append(c.value[-1])
    uid = (user or "").split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        failures.append("%s: the final stage must run as a numeric non-root USER, not %r" % (shown, user))
    if entrypoint != ["engram"]:
        failures.append("%s: ENTRYPOINT must be [\"engram\"], not %r" % (shown, entrypoint))
    models = env.get("ENGRAM__EMBEDDER__MODELS_DIR")
    if models not in copied:
        failures.append("%s: ENGRAM__EMBEDDER__MODELS_DIR=%s is not where the models are copied (%s)" % (shown, models, copied))
    # What the manifests expect of the image.
    for r in renders:
        for w in r.workloads():
            spec = pod_spec(w)
            for c in containers(spec, init=False):
                if not is_engram(c.get("image")):
                    continue
                run_as = (c.get("securityContext") or {}).get("runAsUser", (spec.get("securityContext") or {}).get("runAsUser"))
                if run_as is not None and uid.isdigit() and run_as != int(uid):
                    failures.append("%s: %s runs as %s, the image as %s" % (r.label, kname(w), run_as, uid))
                for p in c.get("ports") or []:
                    if p.get("containerPort") not in exposed:
                        failures.append("%s: %s: port %s is not EXPOSEd by %s" % (r.label, kname(w), p.get("containerPort"), shown))
    return failures, {"env": env, "user": user, "entrypoint": entrypoint, "exposed": sorted(exposed)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kube-versions", required=True, help="comma-separated, e.g. 1.30.0,1.37.0")
    ap.add_argument("--out", help="write each render (and the image's settings) as JSON here")
    ap.add_argument("--dockerfile")
    ap.add_argument("--toolchain")
    ap.add_argument("renders", nargs="+", metavar="LABEL=FILE")
    a = ap.parse_args()
    versions = [v for v in a.kube_versions.split(",") if v]

    renders, failures, total = [], [], 0
    for spec in a.renders:
        label, _, path = spec.partition("=")
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            failures.append("%s: not valid YAML: %s" % (label, e))
            continue
        r = Render(label, docs)
        check_render(r, versions)
        renders.append(r)
        failures += r.failures
        total += len(docs)
        kinds = {}
        for d in docs:
            if isinstance(d, dict):
                kinds[d.get("kind")] = kinds.get(d.get("kind"), 0) + 1
        print("%s: %d documents (%s)%s" % (label, len(docs), ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items(), key=str)),
                                          "" if not r.failures else ": %d failures" % len(r.failures)))
        if a.out:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") + ".json"
            with open(os.path.join(a.out, name), "w") as f:
                json.dump({"label": label, "documents": docs}, f, indent=1, sort_keys=True, default=str)

    image = None
    if a.dockerfile:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        shown = os.path.relpath(a.dockerfile, repo)
        image_failures, image = check_dockerfile(a.dockerfile, a.toolchain, renders, shown)
        failures += image_failures
        print("%s: %s" % (shown, "%d failures" % len(image_failures) if image_failures else "consistent with the manifests"))
        if a.out and image:
            with open(os.path.join(a.out, "image.json"), "w") as f:
                json.dump(image, f, indent=1, sort_keys=True)

    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    if failures:
        print("validate-manifests: %d failures in %d documents of %d renders" % (len(failures), total, len(renders)), file=sys.stderr)
        return 1
    print("validate-manifests: %d documents in %d renders valid against Kubernetes %s (strict)"
          % (total, len(renders), ", ".join(versions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
