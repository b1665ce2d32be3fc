{{/* coyote.validateValues: collects every error in the values and fails once, listing them all. */}}
{{- define "coyote.validateValues" -}}
{{- $errors := list -}}
{{- $errors = append $errors (include "coyote.validateValues.executor" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.kafka" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.redis" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.postgresql" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.vault" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.controlPlane" .) -}}
{{- $errors = append $errors (include "coyote.validateValues.feeds" .) -}}
{{- $errors = without $errors "" -}}
{{- if $errors -}}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $errors) | fail -}}
{{- end -}}
{{- end -}}

{{/* coyote.validateValues.executor: replicas bounded by the intents partitions; an accounts file. */}}
{{- define "coyote.validateValues.executor" -}}
{{- $replicas := int .Values.executor.replicaCount -}}
{{- $partitions := int .Values.kafka.intentsTopicPartitions -}}
{{- $out := list -}}
{{- if gt $replicas $partitions -}}
{{- $out = append $out (printf "executor.replicaCount: %d executors but the intents topic has %d partitions (kafka.intentsTopicPartitions); an executor without a partition would idle. Use at most %d executors, or more partitions." $replicas $partitions $partitions) -}}
{{- end -}}
{{- if lt $replicas 1 -}}
{{- $out = append $out (printf "executor.replicaCount: must be at least 1, got %d." $replicas) -}}
{{- end -}}
{{- if and (empty .Values.executor.accounts) (empty .Values.executor.existingAccountsConfigMap) -}}
{{- $out = append $out "executor.accounts: the executor needs an accounts file; set executor.accounts (TOML) or executor.existingAccountsConfigMap." -}}
{{- end -}}
{{- if not (has .Values.executor.podAntiAffinityPreset (list "soft" "hard" "")) -}}
{{- $out = append $out (printf "executor.podAntiAffinityPreset: expected soft, hard or \"\", got %q." .Values.executor.podAntiAffinityPreset) -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.kafka: an external Kafka needs its bootstrap servers; sane partition counts. */}}
{{- define "coyote.validateValues.kafka" -}}
{{- $out := list -}}
{{- if and (not .Values.kafka.enabled) (empty .Values.kafka.external.bootstrapServers) -}}
{{- $out = append $out "kafka.external.bootstrapServers: Kafka is external (kafka.enabled=false), so its bootstrap servers are required, e.g. kafka-0.kafka:9092." -}}
{{- end -}}
{{- if lt (int .Values.kafka.intentsTopicPartitions) 1 -}}
{{- $out = append $out (printf "kafka.intentsTopicPartitions: must be at least 1, got %v." .Values.kafka.intentsTopicPartitions) -}}
{{- end -}}
{{- if and .Values.kafka.enabled (gt (int .Values.kafka.replicationFactor) 1) -}}
{{- $out = append $out (printf "kafka.replicationFactor: the bundled Kafka has one broker, so the replication factor must be 1, got %v." .Values.kafka.replicationFactor) -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.redis: an external Redis needs its URL, without a password in it. */}}
{{- define "coyote.validateValues.redis" -}}
{{- $out := list -}}
{{- if not .Values.redis.enabled -}}
{{- if empty .Values.redis.external.url -}}
{{- $out = append $out "redis.external.url: Redis is external (redis.enabled=false), so its URL is required, e.g. redis://redis.example.com:6379/0." -}}
{{- else -}}
{{- $url := urlParse .Values.redis.external.url -}}
{{- if not (has $url.scheme (list "redis" "rediss")) -}}
{{- $out = append $out (printf "redis.external.url: expected a redis:// or rediss:// URL, got scheme %q." $url.scheme) -}}
{{- end -}}
{{- if $url.userinfo -}}
{{- $out = append $out "redis.external.url: must not hold credentials; put the password in a Secret (redis.auth.existingSecret)." -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.postgresql: an external database needs a host and a Secret. */}}
{{- define "coyote.validateValues.postgresql" -}}
{{- $out := list -}}
{{- if not .Values.postgresql.enabled -}}
{{- if empty .Values.postgresql.auth.existingSecret -}}
{{- $out = append $out "postgresql.auth.existingSecret: the database is external (postgresql.enabled=false), so its password (or whole URL, postgresql.external.existingSecretUrlKey) must come from an existing Secret." -}}
{{- end -}}
{{- if and (empty .Values.postgresql.external.host) (empty .Values.postgresql.external.existingSecretUrlKey) -}}
{{- $out = append $out "postgresql.external.host: the database is external, so its host is required (or a whole URL in the Secret, postgresql.external.existingSecretUrlKey)." -}}
{{- end -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.vault: an external Vault needs its address; each auth method its settings. */}}
{{- define "coyote.validateValues.vault" -}}
{{- $out := list -}}
{{- $auth := .Values.vault.auth -}}
{{- if and (not .Values.vault.enabled) (empty .Values.vault.external.addr) -}}
{{- $out = append $out "vault.external.addr: Vault is external (vault.enabled=false), so its address is required, e.g. https://vault.example.com:8200." -}}
{{- end -}}
{{- if eq $auth.method "token" -}}
{{- if empty $auth.existingSecret -}}
{{- $out = append $out "vault.auth.existingSecret: the token method needs the Vault token in an existing Secret (never in values)." -}}
{{- end -}}
{{- else if eq $auth.method "kubernetes" -}}
{{- if or (empty $auth.kubernetes.executorRole) (empty $auth.kubernetes.controlPlaneRole) -}}
{{- $out = append $out "vault.auth.kubernetes: the kubernetes method needs executorRole and controlPlaneRole (Vault roles bound to their service accounts)." -}}
{{- end -}}
{{- else -}}
{{- $out = append $out (printf "vault.auth.method: expected kubernetes or token, got %q." $auth.method) -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.controlPlane: a known supervisor backend; an Ingress host. */}}
{{- define "coyote.validateValues.controlPlane" -}}
{{- $out := list -}}
{{- if not (has .Values.controlPlane.supervisor.backend (list "kubernetes" "none")) -}}
{{- $out = append $out (printf "controlPlane.supervisor.backend: expected kubernetes or none in a cluster, got %q." .Values.controlPlane.supervisor.backend) -}}
{{- end -}}
{{- if and .Values.controlPlane.ingress.enabled (empty .Values.controlPlane.ingress.hostname) -}}
{{- $out = append $out "controlPlane.ingress.hostname: the Ingress needs a host name." -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.allowExternal) (empty .Values.networkPolicy.ingressFrom) -}}
{{- $out = append $out "networkPolicy.ingressFrom: with allowExternal=false, name the peers that may reach the control plane (e.g. the ingress controller's namespace); none would lock everyone out." -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}

{{/* coyote.validateValues.feeds: each feed has a unique DNS-label name and arguments. */}}
{{- define "coyote.validateValues.feeds" -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range $index, $feed := .Values.feeds -}}
{{- $name := toString (default "" $feed.name) -}}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$" $name) -}}
{{- $out = append $out (printf "feeds[%d].name: expected a DNS label (lowercase letters, digits, inner hyphens), got %q." $index $name) -}}
{{- else if hasKey $seen $name -}}
{{- $out = append $out (printf "feeds[%d].name: %q is used by another feed." $index $name) -}}
{{- end -}}
{{- $_ := set $seen $name true -}}
{{- if empty $feed.args -}}
{{- $out = append $out (printf "feeds[%d].args: the arguments of `coyote-sdk feed` are required, e.g. [random-walk, EURUSD=1.08, --venue, demo-fx]." $index) -}}
{{- end -}}
{{- end -}}
{{- join "\n" $out -}}
{{- end -}}
