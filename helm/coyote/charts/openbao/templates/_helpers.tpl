{{/* openbao.name: the chart's name (its alias when the parent renamed it), or nameOverride. */}}
{{- define "openbao.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* openbao.fullname: `<release>-<name>`, or fullnameOverride. */}}
{{- define "openbao.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "openbao.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* openbao.selectorLabels: the labels its pods are selected by. */}}
{{- define "openbao.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openbao.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* openbao.labels: the labels of its objects. */}}
{{- define "openbao.labels" -}}
{{ include "openbao.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coyote
{{- end -}}

{{/* openbao.image: `registry/repository:tag` or `@digest`, honouring global.imageRegistry. */}}
{{- define "openbao.image" -}}
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

{{/* openbao.imagePullSecrets: global.imagePullSecrets, as the pod's imagePullSecrets. */}}
{{- define "openbao.imagePullSecrets" -}}
{{- if and .Values.global .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range .Values.global.imagePullSecrets }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* openbao.serviceHost: the cluster DNS name of its Service. */}}
{{- define "openbao.serviceHost" -}}
{{- $domain := "cluster.local" -}}
{{- if and .Values.global .Values.global.clusterDomain -}}
{{- $domain = .Values.global.clusterDomain -}}
{{- end -}}
{{- printf "%s.%s.svc.%s" (include "openbao.fullname" .) .Release.Namespace $domain -}}
{{- end -}}
