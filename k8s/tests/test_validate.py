"""The manifest checks pass on the shipped manifests and fail on broken copies of them."""

import pathlib
import sys

import pytest

K8S = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(K8S))

import validate


def test_shipped_manifests_are_valid():
    assert validate.validate_tree(K8S) == []


CASES = [
    (
        "typo in a field",
        "000-rolling-update/deployment.yaml",
        "revisionHistoryLimit",
        "revisionHistoryLimt",
        "revisionHistoryLimt",
    ),
    (
        "removed apiVersion",
        "000-rolling-update/deployment-0.9.yaml",
        "apiVersion: apps/v1",
        "apiVersion: extensions/v1beta1",
        "has been removed",
    ),
    (
        "nodePort out of range",
        "000-rolling-update/service.yaml",
        "nodePort: 30021",
        "nodePort: 21000",
        "outside 30000-32767",
    ),
    (
        "wrong port name in a Service",
        "rolling-update/service.yaml",
        "targetPort: http",
        "targetPort: web",
        "targetPort 'web'",
    ),
    (
        "wrong port name in a probe",
        "rolling-update/deployment.yaml",
        "path: /readyz\n            port: http",
        "path: /readyz\n            port: htp",
        "readinessProbe port 'htp'",
    ),
    (
        "grace period too short",
        "003-zero-downtime/myapp.yaml",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds: 10",
        "terminationGracePeriodSeconds 10 < ",
    ),
    (
        "native sleep longer than grace",
        "003-zero-downtime/myapp-prestop-sleep.yaml",
        "seconds: 10",
        "seconds: 25",
        "< preStop",
    ),
    (
        "selector does not match",
        "002-deploy-demo/deploy-demo.yaml",
        "release: canary\n  template",
        "release: stable\n  template",
        "does not match",
    ),
    (
        "version in an in-place selector",
        "004-strategies/ramped/app-v1.yaml",
        "matchLabels:\n      app: my-app",
        "matchLabels:\n      app: my-app\n      version: v1.0.0",
        "selects on `version`",
    ),
    (
        "missing probes",
        "rolling-update/deployment-0.9.yaml",
        "livenessProbe:",
        "startupProbe:",
        "no livenessProbe",
    ),
    (
        "image tag not built",
        "004-strategies/canary/app-v2.yaml",
        "image: my-app:v2.0.0",
        "image: my-app:v3.0.0",
        "not one `make images` builds",
    ),
    (
        "foreign image",
        "002-blue-green/myapp-v1.yaml",
        "image: myapp:v1",
        "image: janakiramm/myapp:v1",
        "not one `make images` builds",
    ),
    (
        "port the image does not listen on",
        "001-rolling-update-test/rolling-update-test.yaml",
        "containerPort: 9090",
        "containerPort: 8080",
        "listens on 9090",
    ),
    (
        "unknown env var",
        "003-zero-downtime/myapp-without-hook.yaml",
        "name: DRAIN",
        "name: DRAIN_SECONDS",
        "DRAIN_SECONDS is not a setting",
    ),
    (
        "typo in an HTTPRoute",
        "004-strategies/canary-gateway/httproute.yaml",
        "weight: 10",
        "wieght: 10",
        "wieght",
    ),
    (
        "typo in an Istio VirtualService",
        "004-strategies/ab-istio/virtualservice.yaml",
        "subset: v2",
        "subst: v2",
        "subst",
    ),
    (
        "unknown Traefik field",
        "004-strategies/canary-traefik/traefik.yaml",
        "weighted:",
        "weigthed:",
        "weigthed",
    ),
    (
        "typo in a Rollout step",
        "argo-rollouts/rollout-canary.yaml",
        "- setWeight: 50",
        "- setWieght: 50",
        "setWieght",
    ),
    (
        "pause as a bare duration in a Rollout step",
        "argo-rollouts/rollout-canary.yaml",
        "- pause: {duration: 30s}",
        "- pause: 30s",
        "steps.1.pause",
    ),
    (
        "typo in an AnalysisTemplate field",
        "argo-rollouts/analysistemplate.yaml",
        "    successCondition: result[0] >= 0.95",
        "    succesCondition: result[0] >= 0.95",
        "succesCondition",
    ),
    (
        "AnalysisTemplate query with an undeclared arg",
        "argo-rollouts/analysistemplate.yaml",
        'rollouts_pod_template_hash="{{args.canary-hash}}", route="/"}[1m])))',
        'rollouts_pod_template_hash="{{args.canary_hash}}", route="/"}[1m])))',
        "{{args.canary_hash}}, not a declared arg",
    ),
    (
        "Rollout passing an arg the template does not declare",
        "argo-rollouts/rollout-bluegreen.yaml",
        "- name: canary-hash",
        "- name: preview-hash",
        "arg preview-hash is not one testpage-health declares",
    ),
    (
        "Rollout naming a missing AnalysisTemplate",
        "argo-rollouts/rollout-canary.yaml",
        "templateName: testpage-health",
        "templateName: testpage-heath",
        "no AnalysisTemplate testpage-heath",
    ),
    (
        "Rollout naming a missing Service",
        "argo-rollouts/rollout-canary.yaml",
        "canaryService: testpage-canary",
        "canaryService: testpage-canery",
        "no Service testpage-canery",
    ),
    (
        "foreign image in a Rollout",
        "argo-rollouts/rollout-canary.yaml",
        "image: testpage:0.8",
        "image: argoproj/rollouts-demo:blue",
        "not one `make images` builds",
    ),
    (
        "typo in a Flagger Canary",
        "flagger/canary.yaml",
        "thresholdRange:\n        min: 95",
        "thresholdRagne:\n        min: 95",
        "thresholdRagne",
    ),
    (
        "Canary naming a missing MetricTemplate",
        "flagger/canary.yaml",
        "name: testpage-latency-p99",
        "name: testpage-latency-p95",
        "no MetricTemplate testpage-latency-p95",
    ),
    (
        "MetricTemplate with a variable Flagger does not fill in",
        "flagger/metrictemplates.yaml",
        "[{{ interval }}])))",
        "[{{ window }}])))",
        "{{ window }}, not a variable Flagger fills in",
    ),
    (
        "unknown kind",
        "000-rolling-update/service.yaml",
        "kind: Service",
        "kind: Servise",
        "unknown kind",
    ),
]


@pytest.mark.parametrize(
    ("case", "relative", "old", "new", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_broken_copy_is_caught(broken, case, relative, old, new, expected):
    # Only the broken file's folder: the rest is unchanged and checked by the test above.
    problems = validate.validate_tree(broken(relative, old, new).parent)
    assert any(expected in p for p in problems), f"{case}: {problems}"
