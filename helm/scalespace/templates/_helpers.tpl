{{/* Names ------------------------------------------------------------------ */}}

{{- define "scalespace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scalespace.fullname" -}}
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

{{/* A component's name: fullname-<component>, within 63 characters */}}
{{- define "scalespace.component" -}}
{{- printf "%s-%s" (include "scalespace.fullname" .root | trunc (int (sub 62 (len .name))) | trimSuffix "-") .name -}}
{{- end -}}

{{- define "scalespace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "scalespace.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: scalespace
{{- end -}}

{{- define "scalespace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scalespace.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "scalespace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scalespace.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "scalespace.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Secrets: the existing one when named, else the one the chart generates */}}

{{- define "scalespace.apiTokenSecret" -}}
{{- default (include "scalespace.component" (dict "root" . "name" "api-token")) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "scalespace.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if and .Values.s3.bundled.enabled (not .Values.s3.endpoint) -}}
{{- include "scalespace.component" (dict "root" . "name" "s3") -}}
{{- end -}}
{{- end -}}

{{- define "scalespace.redisSecret" -}}
{{- include "scalespace.component" (dict "root" . "name" "redis") -}}
{{- end -}}

{{- define "scalespace.bundledRedis" -}}
{{- if and .Values.redis.bundled.enabled (not .Values.redis.sentinel.hosts) (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "scalespace.bundledS3" -}}
{{- if and .Values.s3.bundled.enabled (not .Values.s3.endpoint) -}}true{{- end -}}
{{- end -}}

{{- define "scalespace.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.s3.bundled.enabled -}}
{{- printf "http://%s:8333" (include "scalespace.component" (dict "root" . "name" "s3")) -}}
{{- else -}}
{{- fail "s3.endpoint: set the S3 endpoint URL, or turn s3.bundled.enabled on for a trial" -}}
{{- end -}}
{{- end -}}

{{/* Environment ------------------------------------------------------------
Which settings each component gets (docs/deploy.md has the table):
  all three: Redis, S3, and .Values.config (lanes, limits, leases, TTLs)
  API:       + API token, host and port, and .Values.api.config
  worker:    + device, deterministic, heartbeat file, shutdown timeout, Triton
             cache, and .Values.worker.config
  sweep:     + the sweeps file
  none:      results_dir (the local store: the chart always uses S3), api_url
             (for clients), nightly_sweeps and nightly_cron (Celery beat: the
             chart schedules the sweep with a CronJob)
*/}}

{{/* A setting as an env value; whole numbers without an exponent (values are float64) */}}
{{- define "scalespace.settingValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "scalespace.settingsEnv" -}}
{{- range $name, $value := . }}
- name: {{ printf "SCALESPACE_%s" (upper $name) }}
  value: {{ include "scalespace.settingValue" $value | quote }}
{{- end }}
{{- end -}}

{{/* Redis through Sentinels: the master's and the Sentinels' passwords from a Secret (a missing key: none) */}}
{{- define "scalespace.sentinelSecretEnv" -}}
- name: {{ .name }}
{{- if and .root.Values.redis.sentinel.hosts .root.Values.redis.sentinel.existingSecret .key }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.redis.sentinel.existingSecret }}
      key: {{ .key }}
      optional: true
{{- else }}
  value: ""
{{- end }}
{{- end -}}

{{- define "scalespace.sentinelEnv" -}}
{{- $s := .Values.redis.sentinel -}}
- name: SCALESPACE_REDIS_SENTINELS
  value: {{ join "," $s.hosts | quote }}
- name: SCALESPACE_REDIS_SENTINEL_MASTER
  value: {{ $s.masterName | quote }}
- name: SCALESPACE_REDIS_DB
  value: {{ include "scalespace.settingValue" $s.db | quote }}
{{ include "scalespace.sentinelSecretEnv" (dict "root" . "name" "SCALESPACE_REDIS_PASSWORD" "key" $s.passwordKey) }}
{{ include "scalespace.sentinelSecretEnv" (dict "root" . "name" "SCALESPACE_REDIS_SENTINEL_PASSWORD" "key" $s.sentinelPasswordKey) }}
{{- end -}}

{{- define "scalespace.commonEnv" -}}
{{ include "scalespace.sentinelEnv" . }}
- name: SCALESPACE_REDIS_URL
{{- if .Values.redis.sentinel.hosts }}
{{- if or .Values.redis.external.url .Values.redis.external.existingSecret }}
{{- fail "redis: set redis.sentinel.hosts or redis.external, not both" }}
{{- end }}
  value: ""
{{- else if include "scalespace.bundledRedis" . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "scalespace.redisSecret" . }}
      key: redis-url
{{- else if .Values.redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.urlKey }}
{{- else if .Values.redis.external.url }}
  value: {{ .Values.redis.external.url | quote }}
{{- else }}
{{- fail "redis: set redis.external.url or redis.external.existingSecret, or turn redis.bundled.enabled on for a trial" }}
{{- end }}
- name: SCALESPACE_S3_ENDPOINT
  value: {{ include "scalespace.s3Endpoint" . | quote }}
- name: SCALESPACE_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: SCALESPACE_S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: SCALESPACE_S3_PREFIX
  value: {{ .Values.s3.prefix | quote }}
- name: SCALESPACE_S3_CREATE_BUCKET
  value: {{ .Values.s3.createBucket | toString | quote }}
{{- with include "scalespace.s3Secret" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.s3.secretAccessKeyKey }}
{{- end }}
{{- include "scalespace.settingsEnv" .Values.config }}
- name: HOME
  value: /tmp
{{- end -}}

{{- define "scalespace.apiEnv" -}}
{{ include "scalespace.commonEnv" . }}
- name: SCALESPACE_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "scalespace.apiTokenSecret" . }}
      key: {{ .Values.auth.tokenKey }}
- name: SCALESPACE_API_HOST
  value: "0.0.0.0"
- name: SCALESPACE_API_PORT
  value: {{ include "scalespace.settingValue" .Values.api.port | quote }}
{{- include "scalespace.settingsEnv" .Values.api.config }}
{{- end -}}

{{- define "scalespace.heartbeatFile" -}}/run/scalespace/heartbeat{{- end -}}
{{- define "scalespace.tritonCacheDir" -}}/var/cache/triton{{- end -}}
{{- define "scalespace.sweepsFile" -}}/etc/scalespace/sweeps.yaml{{- end -}}

{{- define "scalespace.workerEnv" -}}
{{ include "scalespace.commonEnv" . }}
- name: SCALESPACE_DEVICE
  value: {{ ternary "cuda" "cpu" .Values.worker.gpu.enabled | quote }}
- name: SCALESPACE_DETERMINISTIC
  value: {{ .Values.worker.deterministic | toString | quote }}
- name: SCALESPACE_HEARTBEAT_FILE
  value: {{ include "scalespace.heartbeatFile" . | quote }}
- name: SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S
  value: {{ include "scalespace.settingValue" .Values.worker.shutdownTimeoutSeconds | quote }}
- name: SCALESPACE_TRITON_CACHE_DIR
  value: {{ include "scalespace.tritonCacheDir" . | quote }}
- name: TRITON_CACHE_DIR
  value: {{ include "scalespace.tritonCacheDir" . | quote }}
{{- include "scalespace.settingsEnv" .Values.worker.config }}
{{- end -}}

{{- define "scalespace.sweepEnv" -}}
{{ include "scalespace.commonEnv" . }}
- name: SCALESPACE_SWEEPS_FILE
  value: {{ include "scalespace.sweepsFile" . | quote }}
{{- end -}}

{{/* Pods ------------------------------------------------------------------- */}}

{{- define "scalespace.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "scalespace.securityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/* A generated secret value: kept from the live object on upgrade, else new */}}
{{- define "scalespace.keepOrRandom" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing "data") (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end -}}
