{{/* postgresql.name: the chart's name (its alias when the parent renamed it), or nameOverride. */}}
{{- define "postgresql.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* postgresql.fullname: `<release>-<name>`, or fullnameOverride. */}}
{{- define "postgresql.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "postgresql.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* postgresql.selectorLabels: the labels its pods are selected by. */}}
{{- define "postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgresql.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* postgresql.labels: the labels of its objects. */}}
{{- define "postgresql.labels" -}}
{{ include "postgresql.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coyote
{{- end -}}

{{/* postgresql.image: `registry/repository:tag` or `@digest`, honouring global.imageRegistry. */}}
{{- define "postgresql.image" -}}
{{- $registry := .Values.image.registry -}}
{{- if and .Values.global .Values.global.imageRegistry -}}
{{- $registry = .Values.global.imageRegistry -}}
{{- end -}}
{{- $prefix := ternary .Values.image.repository (printf "%s/%s" $registry .Values.image.repository) (empty $registry) -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $prefix .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $prefix (toString .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* postgresql.imagePullSecrets: global.imagePullSecrets, as the pod's imagePullSecrets. */}}
{{- define "postgresql.imagePullSecrets" -}}
{{- if and .Values.global .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range .Values.global.imagePullSecrets }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* postgresql.serviceHost: the cluster DNS name of its Service. */}}
{{- define "postgresql.serviceHost" -}}
{{- $domain := "cluster.local" -}}
{{- if and .Values.global .Values.global.clusterDomain -}}
{{- $domain = .Values.global.clusterDomain -}}
{{- end -}}
{{- printf "%s.%s.svc.%s" (include "postgresql.fullname" .) .Release.Namespace $domain -}}
{{- end -}}
