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
{{- if .Values.image.digest -}}
image: {{ printf "%s@%s" .Values.image.repository .Values.image.digest | quote }}
{{- else -}}
image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
{{- end }}
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


{{/* The Canary requests the fail-closed webhooks are sent (webhooks.yaml says why these).
Written for CREATE too, when oldObject is null: the first test decides it. A missing field and an
empty one differ where Serin tells them apart (a request annotation set to "" is invalid). */}}
{{- define "serin.canaryMatchConditions" -}}
matchConditions:
  - name: changes-what-serin-judges
    expression: |-
      request.operation != 'UPDATE'
      || has(object.spec) != has(oldObject.spec)
      || (has(object.spec) && object.spec != oldObject.spec)
      || (has(object.metadata.annotations) && 'serin.dev/request' in object.metadata.annotations
            ? object.metadata.annotations['serin.dev/request'] : null)
         != (has(oldObject.metadata.annotations) && 'serin.dev/request' in oldObject.metadata.annotations
            ? oldObject.metadata.annotations['serin.dev/request'] : null)
      || (!has(object.metadata.deletionTimestamp)
          && (has(object.metadata.finalizers) ? object.metadata.finalizers : [])
             != (has(oldObject.metadata.finalizers) ? oldObject.metadata.finalizers : []))
{{- end }}
