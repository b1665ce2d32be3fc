{{/* ---------------------------------------------------------------------------------------
Names and labels
--------------------------------------------------------------------------------------- */}}

{{/* coyote.name: the chart's name, or nameOverride. */}}
{{- define "coyote.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.fullname: the prefix of every object's name (`<release>-coyote`, or the release alone when it says coyote). */}}
{{- define "coyote.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* coyote.chart: `<chart>-<version>` for the helm.sh/chart label. */}}
{{- define "coyote.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.selectorLabels: the labels every Coyote pod of this release is selected by. */}}
{{- define "coyote.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coyote.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* coyote.labels: the labels of every object of this chart. */}}
{{- define "coyote.labels" -}}
{{ include "coyote.selectorLabels" . }}
helm.sh/chart: {{ include "coyote.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coyote
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* coyote.componentLabels: coyote.labels plus the component; call with (dict "context" $ "component" "executor"). */}}
{{- define "coyote.componentLabels" -}}
{{ include "coyote.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* coyote.componentSelectorLabels: the selector of one component's pods; (dict "context" $ "component" "executor"). */}}
{{- define "coyote.componentSelectorLabels" -}}
{{ include "coyote.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* coyote.annotations: commonAnnotations as a metadata block, or nothing. */}}
{{- define "coyote.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* coyote.controlPlane.fullname: the control plane's objects. */}}
{{- define "coyote.controlPlane.fullname" -}}
{{- printf "%s-control-plane" (include "coyote.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.controlPlane.redisAclSecretName: the Secret of the key the bots' Redis passwords are derived from. */}}
{{- define "coyote.controlPlane.redisAclSecretName" -}}
{{- default (printf "%s-redis-acl" (include "coyote.controlPlane.fullname" .)) .Values.controlPlane.supervisor.redisAcl.existingSecret -}}
{{- end -}}

{{/* coyote.controlPlane.redisAcl: "true" when the supervisor gives each bot its own Redis user. */}}
{{- define "coyote.controlPlane.redisAcl" -}}
{{- ternary "true" "" (and (eq .Values.controlPlane.supervisor.backend "kubernetes") .Values.controlPlane.supervisor.redisAcl.enabled) -}}
{{- end -}}

{{/* coyote.reports.fullname: the reports API's objects. */}}
{{- define "coyote.reports.fullname" -}}
{{- printf "%s-reports" (include "coyote.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.executor.fullname: the executors' objects. */}}
{{- define "coyote.executor.fullname" -}}
{{- printf "%s-executor" (include "coyote.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.feed.fullname: one feed's objects; (dict "context" $ "feed" $feed). */}}
{{- define "coyote.feed.fullname" -}}
{{- printf "%s-feed-%s" (include "coyote.fullname" .context) .feed.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* coyote.controlPlane.serviceAccountName: the control plane's (and the supervisor's) ServiceAccount. */}}
{{- define "coyote.controlPlane.serviceAccountName" -}}
{{- if .Values.controlPlane.serviceAccount.create -}}
{{- default (include "coyote.controlPlane.fullname" .) .Values.controlPlane.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.controlPlane.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* coyote.executor.serviceAccountName: the executors' ServiceAccount. */}}
{{- define "coyote.executor.serviceAccountName" -}}
{{- if .Values.executor.serviceAccount.create -}}
{{- default (include "coyote.executor.fullname" .) .Values.executor.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.executor.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* coyote.reports.serviceAccountName: the reports API's ServiceAccount (one of its own, with no token). */}}
{{- define "coyote.reports.serviceAccountName" -}}
{{- include "coyote.reports.fullname" . -}}
{{- end -}}

{{/* coyote.botRuntime.serviceAccountName: the bots' ServiceAccount, named to the supervisor. */}}
{{- define "coyote.botRuntime.serviceAccountName" -}}
{{- if .Values.botRuntime.serviceAccount.create -}}
{{- default (printf "%s-bot" (include "coyote.fullname" .)) .Values.botRuntime.serviceAccount.name -}}
{{- else -}}
{{- .Values.botRuntime.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* coyote.botRuntime.namespace: where the supervisor runs the bots. */}}
{{- define "coyote.botRuntime.namespace" -}}
{{- default .Release.Namespace .Values.botRuntime.namespace -}}
{{- end -}}

{{/* coyote.botRuntime.podSelector: the labels the Kubernetes backend puts on every bot pod. */}}
{{- define "coyote.botRuntime.podSelector" -}}
app.kubernetes.io/name: coyote-bot
app.kubernetes.io/managed-by: coyote
{{- end -}}

{{/* ---------------------------------------------------------------------------------------
Images
--------------------------------------------------------------------------------------- */}}

{{/* coyote.image: `registry/repository:tag` (or `@digest`); (dict "image" .Values.x.image "context" $). */}}
{{- define "coyote.image" -}}
{{- $registry := default .image.registry .context.Values.global.imageRegistry -}}
{{- $repository := .image.repository -}}
{{- $prefix := ternary $repository (printf "%s/%s" $registry $repository) (empty $registry) -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $prefix .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $prefix (toString (default .context.Chart.AppVersion .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/* coyote.imagePullSecrets: the pods' imagePullSecrets, from global.imagePullSecrets. */}}
{{- define "coyote.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------
Pods
--------------------------------------------------------------------------------------- */}}

{{/* coyote.podAntiAffinity: the soft/hard preset spreading one component's pods over nodes; (dict "context" $ "component" "executor" "preset" "soft"). */}}
{{- define "coyote.podAntiAffinity" -}}
{{- if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "coyote.componentSelectorLabels" (dict "context" .context "component" .component) | trim | nindent 10 }}
{{- else if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "coyote.componentSelectorLabels" (dict "context" .context "component" .component) | trim | nindent 12 }}
{{- end }}
{{- end -}}

{{/* coyote.affinity: the component's affinity, or its anti-affinity preset; (dict "context" $ "component" "executor" "values" .Values.executor). */}}
{{- define "coyote.affinity" -}}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if .values.podAntiAffinityPreset }}
affinity:
  {{- include "coyote.podAntiAffinity" (dict "context" .context "component" .component "preset" .values.podAntiAffinityPreset) | trim | nindent 2 }}
{{- end }}
{{- end -}}

{{/* coyote.probe: an HTTP probe of `path` on port `port`, from a probe's values; (dict "probe" .Values.x.livenessProbe "path" "/healthz" "port" "http"). */}}
{{- define "coyote.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{- with .probe.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/* coyote.pdb.spec: minAvailable or maxUnavailable of a PodDisruptionBudget; takes the component's pdb values. */}}
{{- define "coyote.pdb.spec" -}}
{{- if not (kindIs "invalid" .minAvailable) }}{{- if ne (toString .minAvailable) "" }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable | default 1 }}
{{- end }}{{- else }}
maxUnavailable: {{ .maxUnavailable | default 1 }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------
Shared services: addresses and credentials. A secret only ever reaches a container through
secretKeyRef; URLs that need one refer to it as $(VAR), which Kubernetes expands.
--------------------------------------------------------------------------------------- */}}

{{/* coyote.subchart.fullname: the fullname a bundled subchart gives its objects; (dict "name" "kafka" "values" .Values.kafka "context" $). */}}
{{- define "coyote.subchart.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .name .values.nameOverride -}}
{{- if contains $name .context.Release.Name -}}
{{- .context.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .context.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* coyote.subchart.podSelector: the labels of a bundled subchart's pods; (dict "name" "kafka" "values" .Values.kafka "context" $). */}}
{{- define "coyote.subchart.podSelector" -}}
app.kubernetes.io/name: {{ default .name .values.nameOverride }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- end -}}

{{/* coyote.serviceHost: the cluster DNS name of a Service of this release; (dict "name" "x" "context" $). */}}
{{- define "coyote.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .name .context.Release.Namespace .context.Values.global.clusterDomain -}}
{{- end -}}

{{/* coyote.kafka.fullname: the bundled Kafka's Service. */}}
{{- define "coyote.kafka.fullname" -}}
{{- include "coyote.subchart.fullname" (dict "name" "kafka" "values" .Values.kafka "context" .) -}}
{{- end -}}

{{/* coyote.kafka.bootstrap: Kafka's bootstrap servers. */}}
{{- define "coyote.kafka.bootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s:9092" (include "coyote.serviceHost" (dict "name" (include "coyote.kafka.fullname" .) "context" .)) -}}
{{- else -}}
{{- .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* coyote.redis.fullname: the bundled Redis's Service. */}}
{{- define "coyote.redis.fullname" -}}
{{- include "coyote.subchart.fullname" (dict "name" "redis" "values" .Values.redis "context" .) -}}
{{- end -}}

{{/* coyote.redis.secretName: the Secret holding Redis's password. */}}
{{- define "coyote.redis.secretName" -}}
{{- default (include "coyote.redis.fullname" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/* coyote.redis.secretKey: the key of Redis's password in that Secret. */}}
{{- define "coyote.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/* coyote.redis.usesPassword: "true" when the applications present a Redis password. */}}
{{- define "coyote.redis.usesPassword" -}}
{{- if .Values.redis.enabled -}}
{{- ternary "true" "" (and .Values.redis.auth.enabled true) -}}
{{- else -}}
{{- ternary "true" "" (not (empty .Values.redis.auth.existingSecret)) -}}
{{- end -}}
{{- end -}}

{{/* coyote.redis.url: Redis's URL; the password, if any, as $(COYOTE_REDIS_PASSWORD). */}}
{{- define "coyote.redis.url" -}}
{{- $auth := ternary ":$(COYOTE_REDIS_PASSWORD)@" "" (eq (include "coyote.redis.usesPassword" .) "true") -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s%s:6379/0" $auth (include "coyote.serviceHost" (dict "name" (include "coyote.redis.fullname" .) "context" .)) -}}
{{- else -}}
{{- $url := urlParse .Values.redis.external.url -}}
{{- $path := ternary "/0" $url.path (empty $url.path) -}}
{{- printf "%s://%s%s%s" $url.scheme $auth $url.host $path -}}
{{- end -}}
{{- end -}}

{{/* coyote.redis.env: the Redis password (from its Secret) and URL. */}}
{{- define "coyote.redis.env" -}}
{{- if eq (include "coyote.redis.usesPassword" .) "true" }}
- name: COYOTE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "coyote.redis.secretName" . }}
      key: {{ include "coyote.redis.secretKey" . }}
{{- end }}
- name: COYOTE_REDIS_URL
  value: {{ include "coyote.redis.url" . | quote }}
{{- end -}}

{{/* coyote.kafka.env: Kafka's bootstrap servers. */}}
{{- define "coyote.kafka.env" -}}
- name: COYOTE_KAFKA_BOOTSTRAP
  value: {{ include "coyote.kafka.bootstrap" . | quote }}
{{- end -}}

{{/* coyote.postgresql.fullname: the bundled PostgreSQL's Service. */}}
{{- define "coyote.postgresql.fullname" -}}
{{- include "coyote.subchart.fullname" (dict "name" "postgresql" "values" .Values.postgresql "context" .) -}}
{{- end -}}

{{/* coyote.postgresql.secretName: the Secret holding the database password (or URL). */}}
{{- define "coyote.postgresql.secretName" -}}
{{- default (include "coyote.postgresql.fullname" .) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{/* coyote.postgresql.secretKey: the key of the password in that Secret. */}}
{{- define "coyote.postgresql.secretKey" -}}
{{- if .Values.postgresql.auth.existingSecret -}}
{{- .Values.postgresql.auth.existingSecretPasswordKey -}}
{{- else -}}
password
{{- end -}}
{{- end -}}

{{/* coyote.postgresql.wholeUrl: "true" when an external database is given as a whole URL in a Secret. */}}
{{- define "coyote.postgresql.wholeUrl" -}}
{{- ternary "true" "" (and (not .Values.postgresql.enabled) (not (empty .Values.postgresql.external.existingSecretUrlKey))) -}}
{{- end -}}

{{/* coyote.postgresql.url: the SQLAlchemy URL of the database, its password as $(COYOTE_DATABASE_PASSWORD). */}}
{{- define "coyote.postgresql.url" -}}
{{- $auth := .Values.postgresql.auth -}}
{{- if .Values.postgresql.enabled -}}
{{- $host := include "coyote.serviceHost" (dict "name" (include "coyote.postgresql.fullname" .) "context" .) -}}
{{- printf "postgresql+psycopg://%s:$(COYOTE_DATABASE_PASSWORD)@%s:5432/%s" $auth.username $host $auth.database -}}
{{- else -}}
{{- $external := .Values.postgresql.external -}}
{{- $query := ternary "" (printf "?sslmode=%s" $external.sslMode) (empty $external.sslMode) -}}
{{- printf "postgresql+psycopg://%s:$(COYOTE_DATABASE_PASSWORD)@%s:%v/%s%s" $auth.username $external.host $external.port $auth.database $query -}}
{{- end -}}
{{- end -}}

{{/* coyote.postgresql.env: the database URL in each of `names` (a list of variables); (dict "context" $ "names" (list "COYOTE_EXECUTOR_DATABASE_URL")). */}}
{{- define "coyote.postgresql.env" -}}
{{- $ := .context -}}
{{- if eq (include "coyote.postgresql.wholeUrl" $) "true" }}
{{- range .names }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.postgresql.auth.existingSecret }}
      key: {{ $.Values.postgresql.external.existingSecretUrlKey }}
{{- end }}
{{- else }}
- name: COYOTE_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "coyote.postgresql.secretName" $ }}
      key: {{ include "coyote.postgresql.secretKey" $ }}
{{- range .names }}
- name: {{ . }}
  value: {{ include "coyote.postgresql.url" $ | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* coyote.vault.fullname: the bundled OpenBao's Service. */}}
{{- define "coyote.vault.fullname" -}}
{{- include "coyote.subchart.fullname" (dict "name" "vault" "values" .Values.vault "context" .) -}}
{{- end -}}

{{/* coyote.vault.addr: Vault's address. */}}
{{- define "coyote.vault.addr" -}}
{{- if .Values.vault.enabled -}}
{{- printf "http://%s:8200" (include "coyote.serviceHost" (dict "name" (include "coyote.vault.fullname" .) "context" .)) -}}
{{- else -}}
{{- .Values.vault.external.addr -}}
{{- end -}}
{{- end -}}

{{/* coyote.vault.tokenPath: the service-account token presented to Vault's Kubernetes auth. */}}
{{- define "coyote.vault.tokenPath" -}}
{{- if .Values.vault.auth.kubernetes.audience -}}
/var/run/secrets/coyote/vault/token
{{- else -}}
/var/run/secrets/kubernetes.io/serviceaccount/token
{{- end -}}
{{- end -}}

{{/* coyote.vault.env: Vault's address and how to log in, as the role `role`; (dict "context" $ "role" "coyote-executor"). */}}
{{- define "coyote.vault.env" -}}
{{- $ := .context -}}
{{- $auth := $.Values.vault.auth -}}
- name: COYOTE_VAULT_ADDR
  value: {{ include "coyote.vault.addr" $ | quote }}
- name: COYOTE_VAULT_AUTH
  value: {{ $auth.method | quote }}
{{- if eq $auth.method "kubernetes" }}
- name: COYOTE_VAULT_KUBERNETES_ROLE
  value: {{ .role | quote }}
- name: COYOTE_VAULT_KUBERNETES_MOUNT
  value: {{ $auth.kubernetes.mountPath | quote }}
- name: COYOTE_VAULT_KUBERNETES_TOKEN_PATH
  value: {{ include "coyote.vault.tokenPath" $ | quote }}
{{- else }}
- name: COYOTE_VAULT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret }}
      key: {{ $auth.existingSecretTokenKey }}
{{- end }}
{{- end -}}

{{/* coyote.vault.tokenVolume: the projected token for Vault's audience, when one is asked for. */}}
{{- define "coyote.vault.tokenVolume" -}}
{{- if and (eq .Values.vault.auth.method "kubernetes") .Values.vault.auth.kubernetes.audience }}
- name: vault-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .Values.vault.auth.kubernetes.audience }}
          expirationSeconds: {{ .Values.vault.auth.kubernetes.tokenExpirationSeconds }}
          path: token
{{- end }}
{{- end -}}

{{/* coyote.vault.tokenVolumeMount: where that projected token is mounted. */}}
{{- define "coyote.vault.tokenVolumeMount" -}}
{{- if and (eq .Values.vault.auth.method "kubernetes") .Values.vault.auth.kubernetes.audience }}
- name: vault-token
  mountPath: /var/run/secrets/coyote/vault
  readOnly: true
{{- end }}
{{- end -}}

{{/* coyote.vault.needsServiceAccountToken: "true" when Vault's login uses the pod's own API token, which must then be mounted. */}}
{{- define "coyote.vault.needsServiceAccountToken" -}}
{{- ternary "true" "" (and (eq .Values.vault.auth.method "kubernetes") (empty .Values.vault.auth.kubernetes.audience)) -}}
{{- end -}}

{{/* coyote.controlPlane.appEnv: what the control plane's app needs in both its Deployments (control plane and reports). */}}
{{- define "coyote.controlPlane.appEnv" -}}
- name: COYOTE_HOME
  value: /var/lib/coyote
{{ include "coyote.postgresql.env" (dict "context" . "names" (list "COYOTE_CONTROL_PLANE_DATABASE_URL" "COYOTE_CONTROL_PLANE_REPORTS__DATABASE_URL")) | trim }}
{{ include "coyote.kafka.env" . | trim }}
{{ include "coyote.redis.env" . | trim }}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------
Network policies
--------------------------------------------------------------------------------------- */}}

{{/* coyote.networkPolicy.dnsEgress: the egress rule to the cluster's DNS. */}}
{{- define "coyote.networkPolicy.dnsEgress" -}}
- ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - port: {{ . }}
      protocol: UDP
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* coyote.networkPolicy.cidrEgress: an egress rule to `cidrs` (any address when empty) on `ports`; (dict "cidrs" list "ports" list). */}}
{{- define "coyote.networkPolicy.cidrEgress" -}}
- ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* coyote.networkPolicy.serviceEgress: the egress rule to one shared service, bundled (its pods) or external (its ports and addresses); (dict "context" $ "service" "kafka" "namespace" "<namespace of the policy>"). */}}
{{- define "coyote.networkPolicy.serviceEgress" -}}
{{- $ := .context -}}
{{- $values := index $.Values .service -}}
{{- $ports := dict "kafka" 9092 "redis" 6379 "postgresql" 5432 "vault" 8200 -}}
{{- if $values.enabled -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "coyote.subchart.podSelector" (dict "name" .service "values" $values "context" $) | trim | nindent 10 }}
      {{- if ne .namespace $.Release.Namespace }}
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $.Release.Namespace }}
      {{- end }}
  ports:
    - port: {{ index $ports .service }}
      protocol: TCP
{{- else -}}
{{- $external := index $.Values.networkPolicy.external .service -}}
{{ include "coyote.networkPolicy.cidrEgress" (dict "cidrs" $external.cidrs "ports" $external.ports) }}
{{- end }}
{{- end -}}

{{/* coyote.networkPolicy.componentPeer: a `from` peer for one component's pods of this release; (dict "context" $ "component" "executor"). */}}
{{- define "coyote.networkPolicy.componentPeer" -}}
- podSelector:
    matchLabels:
      {{- include "coyote.componentSelectorLabels" (dict "context" .context "component" .component) | trim | nindent 6 }}
{{- end -}}

{{/* coyote.networkPolicy.botPeer: a `from` peer for the bots' pods, in their namespace. */}}
{{- define "coyote.networkPolicy.botPeer" -}}
- podSelector:
    matchLabels:
      {{- include "coyote.botRuntime.podSelector" . | trim | nindent 6 }}
  {{- if ne (include "coyote.botRuntime.namespace" .) .Release.Namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ include "coyote.botRuntime.namespace" . }}
  {{- end }}
{{- end -}}

{{/* coyote.networkPolicy.httpIngress: who may reach the control plane's and the reports' HTTP port: anyone, or `networkPolicy.ingressFrom`. */}}
{{- define "coyote.networkPolicy.httpIngress" -}}
- ports:
    - port: http
      protocol: TCP
  {{- if not .Values.networkPolicy.allowExternal }}
  from:
    {{- toYaml .Values.networkPolicy.ingressFrom | nindent 4 }}
  {{- end }}
{{- end -}}
