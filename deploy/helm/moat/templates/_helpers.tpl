{{/* The release's resource names. */}}
{{- define "moat.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "moat.appName" -}}
{{- printf "%s-app" (include "moat.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "moat.fullname" . }}
{{- end -}}

{{- define "moat.selector" -}}
app.kubernetes.io/name: moat
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "moat.appSelector" -}}
app.kubernetes.io/name: {{ include "moat.appName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Each app replica's stable address, for backends.app.urls. */}}
{{- define "moat.appURLs" -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.app.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc.cluster.local:%d" (include "moat.appName" $) $i (include "moat.appName" $) $.Release.Namespace (int $.Values.app.port)) -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}

{{/* moat.yaml: config with the keys the chart owns set. */}}
{{- define "moat.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := deepCopy (default (dict) (get $cfg "server")) -}}
{{- $_ := set $server "https_addr" ":8443" -}}
{{- $_ = set $server "http_addr" ":8080" -}}
{{- $_ = set $server "internal_addr" "127.0.0.1:9090" -}}
{{- $_ = set $cfg "server" $server -}}
{{- $_ = set $cfg "data_dir" "/var/lib/moat" -}}
{{- $_ = set $cfg "secret_key_file" (printf "/run/secrets/moat/%s" .Values.instanceKey.key) -}}
{{- if .Values.certificateSecret -}}
{{- $_ = set $cfg "tls" (dict "cert_file" "/run/secrets/moat-tls/tls.crt" "key_file" "/run/secrets/moat-tls/tls.key") -}}
{{- end -}}
{{- if .Values.app.enabled -}}
{{- $backends := deepCopy (default (dict) (get $cfg "backends")) -}}
{{- $_ = set $backends "app" (dict "urls" (include "moat.appURLs" . | fromJsonArray) "health_path" .Values.app.healthPath) -}}
{{- $_ = set $cfg "backends" $backends -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
