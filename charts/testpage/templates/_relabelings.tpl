{{/*
The labels the project's queries read, as k8s/argo-rollouts/prometheus-scrape.yaml gives them:
namespace, pod, app (the pod's label app) and rollouts_pod_template_hash (the hash Argo Rollouts
puts on a ReplicaSet's pods; absent elsewhere).
*/}}
{{- define "testpage.relabelings" -}}
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: namespace
- sourceLabels: [__meta_kubernetes_pod_name]
  targetLabel: pod
- sourceLabels: [__meta_kubernetes_pod_label_app]
  targetLabel: app
- sourceLabels: [__meta_kubernetes_pod_label_rollouts_pod_template_hash]
  targetLabel: rollouts_pod_template_hash
{{- end }}
