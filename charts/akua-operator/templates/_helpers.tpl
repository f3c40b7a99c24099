{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "akua-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every object this chart creates. */}}
{{- define "akua-operator.fullname" -}}
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

{{- define "akua-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "akua-operator.labels" -}}
helm.sh/chart: {{ include "akua-operator.chart" . }}
{{ include "akua-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: akua-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels selecting the operator pods (immutable: never add to them). */}}
{{- define "akua-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "akua-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "akua-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "akua-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the operator's own token, or "" when it has none. */}}
{{- define "akua-operator.credentialsSecretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if .Values.credentials.token }}
{{- printf "%s-credentials" (include "akua-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The ConfigMap (release namespace) recording the clusters the CRD guard released. */}}
{{- define "akua-operator.releasedConfigMap" -}}
{{- printf "%s-released-clusters" (include "akua-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "akua-operator.peeringName" -}}
{{- default (include "akua-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "akua-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
RBAC rules the operator needs in the namespaces it watches (a Role per namespace in namespaced
scope; part of the ClusterRole in cluster scope). Keep in step with docs/helm.md "RBAC".
*/}}
{{- define "akua-operator.namespacedRules" -}}
# AkuaClusters: watch them; add/remove the finalizer and kopf's annotations (kopf writes with
# PATCH only, never PUT). Never create or delete them.
- apiGroups: ["akua.dev"]
  resources: ["akuaclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["akua.dev"]
  resources: ["akuaclusters/status"]
  verbs: ["patch"]
# Secrets named by spec.credentials.secretRef / kubeconfig refs: read one by name, never list.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on AkuaClusters: kopf and the operator create core/v1 Events (never patch them).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Read the AkuaCluster CRD, and only it (the CRD guard). */}}
{{- define "akua-operator.crdGuardRule" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["akuaclusters.akua.dev"]
  verbs: ["get"]
{{- end }}

{{/* Namespaced scope: the ClusterRole that the RoleBinding in each watched namespace grants. */}}
{{- define "akua-operator.watchedRoleName" -}}
{{- printf "%s-watched" (include "akua-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The CA bundle for the Akua API as a dict {kind, name, key} (kind "configMap" or "secret"), or an
empty dict. Absent with `helm upgrade --reuse-values` from an older release: none.
*/}}
{{- define "akua-operator.caBundle" -}}
{{- $ca := dig "caBundle" dict (.Values.akua | default dict) }}
{{- $cm := dig "configMap" dict $ca }}
{{- $sec := dig "secret" dict $ca }}
{{- if dig "name" "" $cm }}
{{- toJson (dict "kind" "configMap" "name" $cm.name "key" (dig "key" "ca.crt" $cm)) }}
{{- else if dig "name" "" $sec }}
{{- toJson (dict "kind" "secret" "name" $sec.name "key" (dig "key" "ca.crt" $sec)) }}
{{- else }}
{{- toJson dict }}
{{- end }}
{{- end }}

{{/*
The scrape options shared by the ServiceMonitor endpoint and the PodMonitor podMetricsEndpoint,
from metrics.serviceMonitor or metrics.podMonitor (a key absent after `--reuse-values` from an
older release: its default).
*/}}
{{- define "akua-operator.scrapeEndpoint" -}}
- port: metrics
  path: /metrics
  interval: {{ dig "interval" "30s" . }}
  scrapeTimeout: {{ dig "scrapeTimeout" "10s" . }}
  {{- /* true by default: the per-object series carry the AkuaCluster's namespace label. */}}
  honorLabels: {{ dig "honorLabels" true . }}
  {{- with dig "relabelings" list . }}
  relabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with dig "metricRelabelings" list . }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The kopf peering objects, as a JSON list: the peering name; with shards, one per shard
(<peering>-default and <peering>-<shard>: the operator appends its shard to AKUA_PEERING_NAME).
*/}}
{{- define "akua-operator.peeringNames" -}}
{{- $peering := include "akua-operator.peeringName" . }}
{{- $shards := .Values.shards | default list }}
{{- if $shards }}
{{- $names := list (printf "%s-default" $peering) }}
{{- range $shards }}
{{- $names = append $names (printf "%s-%s" $peering .) }}
{{- end }}
{{- toJson $names }}
{{- else }}
{{- toJson (list $peering) }}
{{- end }}
{{- end }}
