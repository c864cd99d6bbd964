{{- define "savegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "savegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "savegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "savegate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "savegate.secretName" -}}
{{- .Values.secret.existingSecret | default (include "savegate.fullname" .) -}}
{{- end -}}

{{/* Seconds SaveGate may drain for: server.shutdown_grace_seconds, rounded up. */}}
{{- define "savegate.graceSeconds" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $grace := 30 -}}
{{- if hasKey $server "shutdown_grace_seconds" -}}{{- $grace = $server.shutdown_grace_seconds -}}{{- end -}}
{{- int (ceil $grace) -}}
{{- end -}}

{{/* Replicas share PostgreSQL and Redis: refuse to render several that would not. */}}
{{- define "savegate.checkShared" -}}
{{- $several := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}
{{- if $several -}}
{{- /* The URLs may come from the Secret instead (SAVEGATE_DATABASE_URL, SAVEGATE_REDIS_URL). */ -}}
{{- $env := .Values.secret.env | default dict -}}
{{- $database := .Values.config.database_url | default (get $env "SAVEGATE_DATABASE_URL") | default "" -}}
{{- if not (hasPrefix "postgresql" $database) -}}
{{- fail "config.database_url (or secret.env.SAVEGATE_DATABASE_URL) must be a PostgreSQL URL (postgresql+asyncpg://…): replicas share one database" -}}
{{- end -}}
{{- if not (or .Values.config.redis_url (get $env "SAVEGATE_REDIS_URL")) -}}
{{- fail "config.redis_url (or secret.env.SAVEGATE_REDIS_URL) must be set: replicas share the client rate limits through Redis" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* savegate.yaml: the values' config, its metrics.port set to metrics.port when enabled. */}}
{{- define "savegate.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.metrics.enabled -}}
{{- $metrics := $config.metrics | default dict -}}
{{- if and (hasKey $metrics "enabled") (not $metrics.enabled) -}}
{{- fail "metrics.enabled serves config.metrics on a port of its own: config.metrics.enabled must not be false" -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) 8000 -}}
{{- fail "metrics.port must differ from 8000, the main port" -}}
{{- end -}}
{{- $_ := set $metrics "port" (int .Values.metrics.port) -}}
{{- $_ = set $config "metrics" $metrics -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
