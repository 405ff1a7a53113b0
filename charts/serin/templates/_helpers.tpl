{{/* Labels on every object's metadata. Selectors name their own (name and component) only:
they are immutable in Deployments and Jobs. */}}
{{- define "serin.labels" -}}
app.kubernetes.io/name: serin
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Every container (server, certificate jobs, tick) runs the same image. */}}
{{- define "serin.image" -}}
image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end }}

{{/* The namespaces the API server never sends to Serin: the listed ones and Serin's own. */}}
{{- define "serin.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ append .Values.webhooks.excludeNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}

