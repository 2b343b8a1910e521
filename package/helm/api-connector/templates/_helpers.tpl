{{/*
Names: the release name alone when it already contains the chart name (the conventional
release `api-connector` gives objects named `api-connector`), else "<release>-<chart>".
*/}}
{{- define "api-connector.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "api-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one component (connector or a stage). */}}
{{- define "api-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of an object; call with (dict "root" $ "component" "connector"). */}}
{{- define "api-connector.labels" -}}
{{ include "api-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "api-connector.chart" .root }}
{{- end -}}

{{/* repository:tag, falling back to the top-level image and the chart's appVersion. */}}
{{- define "api-connector.image" -}}
{{- $override := .override | default dict -}}
{{- $repository := $override.repository | default .root.Values.image.repository -}}
{{- $tag := $override.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/*
The stages in services mode: CLI name (`api-connector serve <name>`, `--<name>` of `run`)
and values key.
*/}}
{{- define "api-connector.stages" -}}
crd-puller: crdPuller
binder: binder
object-syncer: objectSyncer
{{- end -}}

{{- define "api-connector.stageName" -}}
{{- printf "%s-%s" (include "api-connector.fullname" .root) .stage | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Leader election is required as soon as two connectors could run at once. */}}
{{- define "api-connector.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/* Scheduling and pod security shared by every pod of the chart. */}}
{{- define "api-connector.podPlacement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
