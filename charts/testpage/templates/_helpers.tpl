{{/* The chart's name, and the release's full name (63 characters at most, DNS-1123). */}}
{{- define "testpage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "testpage.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "testpage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods: never the version, so a new version keeps its pods. */}}
{{- define "testpage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "testpage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "testpage.labels" -}}
helm.sh/chart: {{ include "testpage.chart" . }}
{{ include "testpage.selectorLabels" . }}
app.kubernetes.io/version: {{ include "testpage.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "testpage.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag | toString }}
{{- end }}

{{- define "testpage.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "testpage.tag" .) }}
{{- end }}
{{- end }}

{{/* VERSION: the value `version`, else the image tag. */}}
{{- define "testpage.version" -}}
{{- default (include "testpage.tag" .) (toString .Values.version) | trunc 63 }}
{{- end }}

{{- define "testpage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "testpage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Seconds in a duration as testpage reads one: a bare number of seconds (5, 0.5) or integer
parts with the units ms, s, m, h (500ms, 10s, 1m30s). Call with (dict "name" "drain" "value" X);
anything else fails the render, naming the value.
*/}}
{{- define "testpage.seconds" -}}
{{- $text := toString .value | trim }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?$" $text }}
{{- $text | float64 }}
{{- else if regexMatch "^([0-9]+ ?(ms|s|m|h) ?)+$" $text }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+ ?(ms|s|m|h)" $text -1 }}
{{- $number := regexFind "^[0-9]+" . | float64 }}
{{- $unit := regexFind "(ms|s|m|h)$" . }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf $number $scale) }}
{{- end }}
{{- $total }}
{{- else }}
{{- fail (printf "%s: %q is not a duration (500ms, 5s, 1m30s, or a number of seconds)" .name $text) }}
{{- end }}
{{- end }}

{{/* preStop's seconds (0 for none). */}}
{{- define "testpage.preStopSeconds" -}}
{{- if eq .Values.preStop.type "none" }}0{{ else }}{{ .Values.preStop.seconds | float64 }}{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop + drain + shutdownTimeout is what a pod needs to end
cleanly. Unset: that sum, rounded up, + 5 s. Set below it: the render fails, naming both.
*/}}
{{- define "testpage.grace" -}}
{{- $drain := include "testpage.seconds" (dict "name" "drain" "value" .Values.drain) | float64 }}
{{- $timeout := include "testpage.seconds" (dict "name" "shutdownTimeout" "value" .Values.shutdownTimeout) | float64 }}
{{- $preStop := include "testpage.preStopSeconds" . | float64 }}
{{- $needed := addf $preStop $drain $timeout }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- addf (ceil $needed) 5 | int }}
{{- else if lt (.Values.terminationGracePeriodSeconds | float64) $needed }}
{{- fail (printf "terminationGracePeriodSeconds %v is below preStop %vs + drain %vs + shutdownTimeout %vs = %vs: the kubelet would kill pods that are still answering; raise it to %v or more, or unset it" .Values.terminationGracePeriodSeconds $preStop $drain $timeout $needed (ceil $needed)) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/* A probe of `kind` (readiness, liveness, startup) on `path`, of the type the values say. */}}
{{- define "testpage.probe" -}}
{{- $p := .probe }}
{{- if eq $p.type "http" }}
httpGet:
  path: {{ .path }}
  port: http
{{- else if eq $p.type "exec" }}
exec:
  command: ["/probe", "http", "http://127.0.0.1:{{ .port }}{{ .path }}", "--timeout", "{{ $p.timeoutSeconds }}s"]
{{- else if eq $p.type "grpc" }}
grpc:
  port: {{ .port }}
{{- end }}
{{- range $key := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $p $key }}
{{ $key }}: {{ get $p $key }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template, shared by the Deployment and the Rollout. */}}
{{- define "testpage.podTemplate" -}}
metadata:
  labels:
    {{- include "testpage.selectorLabels" . | nindent 4 }}
    {{- /* `app` is the label the project's scrape jobs and queries carry as `app`. */}}
    app: {{ include "testpage.fullname" . }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or .Values.scrapeAnnotations .Values.podAnnotations }}
  annotations:
    {{- if .Values.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ .Values.port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "testpage.serviceAccountName" . }}
  # testpage calls no Kubernetes API: no token in the pod.
  automountServiceAccountToken: false
  # No TESTPAGE_SERVICE_* / *_PORT_* variables in the environment.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "testpage.grace" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
  - name: testpage
    image: {{ include "testpage.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    ports:
    - name: http
      containerPort: {{ .Values.port }}
      protocol: TCP
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: VERSION
      value: {{ include "testpage.version" . | quote }}
    - name: PORT
      value: {{ .Values.port | quote }}
    - name: DRAIN
      value: {{ .Values.drain | quote }}
    - name: SHUTDOWN_TIMEOUT
      value: {{ .Values.shutdownTimeout | quote }}
    - name: READY_FILE
      value: {{ .Values.readyFile | quote }}
    - name: LOG_FORMAT
      value: {{ .Values.logFormat | quote }}
    - name: RUST_LOG
      value: {{ .Values.logLevel | quote }}
    - name: MAX_CONNECTIONS
      value: {{ .Values.maxConnections | quote }}
    - name: IDLE_TIMEOUT
      value: {{ .Values.idleTimeout | quote }}
    - name: HEADER_TIMEOUT
      value: {{ .Values.headerTimeout | quote }}
    - name: ADMIN
      value: {{ .Values.admin | quote }}
    {{- with .Values.message }}
    - name: MESSAGE
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.newline }}
    - name: NEWLINE
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.contentType }}
    - name: CONTENT_TYPE
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.interface }}
    - name: INTERFACE
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.color }}
    - name: COLOR
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.faults }}
    {{- if .errorRate }}
    - name: ERROR_RATE
      value: {{ .errorRate | quote }}
    - name: ERROR_CODE
      value: {{ .errorCode | quote }}
    {{- end }}
    {{- with .latency }}
    - name: LATENCY
      value: {{ . | quote }}
    {{- end }}
    {{- with .startupDelay }}
    - name: STARTUP_DELAY
      value: {{ . | quote }}
    {{- end }}
    {{- with .failAfter }}
    - name: FAIL_AFTER
      value: {{ . | quote }}
    {{- end }}
    {{- if .crashOnStart }}
    - name: CRASH_ON_START
      value: "true"
    {{- end }}
    {{- if .hangOnStart }}
    - name: HANG_ON_START
      value: "true"
    {{- end }}
    {{- end }}
    readinessProbe:
      {{- include "testpage.probe" (dict "probe" .Values.probes.readiness "path" "/readyz" "port" .Values.port) | trim | nindent 6 }}
    livenessProbe:
      {{- include "testpage.probe" (dict "probe" .Values.probes.liveness "path" "/healthz" "port" .Values.port) | trim | nindent 6 }}
    {{- if .Values.probes.startup.enabled }}
    startupProbe:
      {{- include "testpage.probe" (dict "probe" (omit .Values.probes.startup "enabled") "path" "/healthz" "port" .Values.port) | trim | nindent 6 }}
    {{- end }}
    {{- if eq .Values.preStop.type "sleep" }}
    lifecycle:
      preStop:
        sleep:
          seconds: {{ .Values.preStop.seconds }}
    {{- else if eq .Values.preStop.type "drain" }}
    lifecycle:
      preStop:
        exec:
          command: ["/probe", "drain", "--sleep", "{{ .Values.preStop.seconds }}s"]
    {{- end }}
    {{- with .Values.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
    # The ready file lives in /tmp; the root filesystem is read-only.
    - name: tmp
      mountPath: /tmp
  volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
