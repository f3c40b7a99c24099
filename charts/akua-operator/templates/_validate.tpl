{{/*
Checks that involve several values, with messages that say what to change. Single values are
checked by values.schema.json (types, enums, patterns, unknown keys) before this runs.
Included at the top of deployment.yaml, which is always rendered.
*/}}
{{- define "akua-operator.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.rbac.scope "namespaced") (empty $v.watchNamespaces) }}
{{- fail "\n\nrbac.scope=namespaced needs the namespaces to watch: set watchNamespaces (e.g. --set 'watchNamespaces={team-a,team-b}'), or use rbac.scope=cluster to watch all namespaces." }}
{{- end }}
{{- if and (eq $v.rbac.scope "cluster") (not (empty $v.watchNamespaces)) }}
{{- fail (printf "\n\nwatchNamespaces=%v is only for rbac.scope=namespaced: with rbac.scope=cluster the operator watches all namespaces. Set rbac.scope=namespaced, or empty watchNamespaces." $v.watchNamespaces) }}
{{- end }}
{{- if and (dig "namespaceSelector" "" ($v.defaultCredentials | default dict)) (ne $v.rbac.scope "cluster") }}
{{- fail "\n\ndefaultCredentials.namespaceSelector needs rbac.scope=cluster (reading namespace labels needs a cluster-scoped right): list the namespaces in defaultCredentials.namespaces instead." }}
{{- end }}
{{- $gc := dig "guardedChanges" dict ($v.admissionPolicies | default dict) }}
{{- if and (dig "enabled" false $gc) (not (dig "group" "" $gc)) }}
{{- fail "\n\nadmissionPolicies.guardedChanges.enabled=true needs admissionPolicies.guardedChanges.group: the group whose members may set akua.dev/orphan, akua.dev/retry and the deletion fields." }}
{{- end }}
{{- $np := $v.networkPolicy | default dict }}
{{- if and (dig "enabled" false $np) (or (empty (dig "apiServerCIDRs" list $np)) (empty (dig "akuaApiCIDRs" list $np))) }}
{{- fail "\n\nnetworkPolicy.enabled=true needs networkPolicy.apiServerCIDRs and networkPolicy.akuaApiCIDRs (a NetworkPolicy cannot name hosts): the address ranges of the Kubernetes API server and of the Akua API." }}
{{- end }}
{{- $ca := dig "caBundle" dict ($v.akua | default dict) }}
{{- if and (dig "configMap" "name" "" $ca) (dig "secret" "name" "" $ca) }}
{{- fail "\n\nakua.caBundle.configMap.name and akua.caBundle.secret.name are both set: choose one (the operator reads one CA bundle file)." }}
{{- end }}
{{- range ($v.shards | default list) }}
{{- $name := printf "%s-%s" (include "akua-operator.fullname" $) . }}
{{- if gt (len $name) 63 }}
{{- fail (printf "\n\nthe Deployment name %q of shard %q is longer than 63 characters: choose a shorter shard name or fullnameOverride." $name .) }}
{{- end }}
{{- end }}
{{- if and $v.credentials.existingSecret $v.credentials.token }}
{{- fail "\n\ncredentials.existingSecret and credentials.token are both set: choose one (the token goes into the existing Secret, or the chart creates a Secret from credentials.token)." }}
{{- end }}
{{- if and (not $v.peering.enabled) (gt (int $v.replicaCount) 1) }}
{{- fail (printf "\n\nreplicaCount=%v needs peering.enabled=true: without peering several replicas would handle the same AkuaClusters at once. Set replicaCount=1 or enable peering." $v.replicaCount) }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.service.enabled) }}
{{- fail "\n\nmetrics.serviceMonitor.enabled=true needs metrics.service.enabled=true: the ServiceMonitor scrapes the metrics Service." }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (dig "podMonitor" "enabled" false $v.metrics) }}
{{- fail "\n\nmetrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: choose one (both would scrape the operator twice)." }}
{{- end }}
{{- if eq (int $v.metrics.port) (int $v.health.port) }}
{{- fail (printf "\n\nmetrics.port and health.port are both %v: give them different ports (the pod declares each as a container port)." $v.metrics.port) }}
{{- end }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- fail "\n\nserviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the operator runs as." }}
{{- end }}
{{- $common := $v.commonLabels | default dict }}
{{- range $what, $labels := dict "podLabels" ($v.podLabels | default dict) "serviceAccount.labels" (dig "labels" dict $v.serviceAccount) }}
{{- range $key, $_ := $labels }}
{{- if hasKey $common $key }}
{{- fail (printf "\n\nthe label %q is in both commonLabels and %s: set it in one of them (a label key can appear once)." $key $what) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
