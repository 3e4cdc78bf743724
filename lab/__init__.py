"""The lab: the experiments of k8s/ played from their own manifests on one machine.

    python -m lab [EXP ...]           every experiment, or some (run.py)
    python -m lab.sweep EXP           failed requests against the propagation lag
    python -m lab.analysis            Argo Rollouts' and Flagger's queries on a real Prometheus
    python -m lab.chart_analysis      the chart's dashboard and alerts on a real Prometheus

Modules:

    common.py          paths, the log and the clock every module uses
    kube/              the stand-in for Kubernetes: admission, the kubelet, the Deployment
                       controller, Services as kube-proxy on several nodes, the cluster
    run.py             an experiment's steps (kubectl, helm, lab ...) under load, its checks
    results.py         what a run records and writes as result.json
    streams.py         long-lived clients (WebSocket, event stream, gRPC Watch); also a script
    timeline.py        a run's timeline as SVG
    sweep.py           a sweep of variants over lags: sweep.json and sweep.svg
    analysis.py        the analysis queries of k8s/argo-rollouts and k8s/flagger
    chart_analysis.py  the chart's PromQL
    ui_screenshot.py   the README's picture of /ui mid-rollout

The repository's `pyproject.toml` makes `lab` (and scripts/testlib.py) an installed package in
the Makefile's venv; nothing here edits `sys.path`.
"""
