{{/* kafka.name: the chart's name (its alias when the parent renamed it), or nameOverride. */}}
{{- define "kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* kafka.fullname: `<release>-<name>`, or fullnameOverride. */}}
{{- define "kafka.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kafka.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* kafka.selectorLabels: the labels its pods are selected by. */}}
{{- define "kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* kafka.labels: the labels of its objects. */}}
{{- define "kafka.labels" -}}
{{ include "kafka.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coyote
{{- end -}}

{{/* kafka.image: `registry/repository:tag` or `@digest`, honouring global.imageRegistry. */}}
{{- define "kafka.image" -}}
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

{{/* kafka.imagePullSecrets: global.imagePullSecrets, as the pod's imagePullSecrets. */}}
{{- define "kafka.imagePullSecrets" -}}
{{- if and .Values.global .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range .Values.global.imagePullSecrets }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* kafka.serviceHost: the cluster DNS name of its Service. */}}
{{- define "kafka.serviceHost" -}}
{{- $domain := "cluster.local" -}}
{{- if and .Values.global .Values.global.clusterDomain -}}
{{- $domain = .Values.global.clusterDomain -}}
{{- end -}}
{{- printf "%s.%s.svc.%s" (include "kafka.fullname" .) .Release.Namespace $domain -}}
{{- end -}}

{{/* kafka.clusterDomain: the cluster's DNS domain. */}}
{{- define "kafka.clusterDomain" -}}
{{- if and .Values.global .Values.global.clusterDomain -}}
{{- .Values.global.clusterDomain -}}
{{- else -}}
cluster.local
{{- end -}}
{{- end -}}
