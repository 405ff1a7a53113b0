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

{{/* The namespaces the API server sends to Serin: those of watchNamespaces, or every one but the
excluded ones and Serin's own. */}}
{{- define "serin.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      {{- if .Values.watchNamespaces }}
      operator: In
      values: {{ include "serin.watchNamespaces" . }}
      {{- else }}
      operator: NotIn
      values: {{ append .Values.webhooks.excludeNamespaces .Release.Namespace | uniq | toJson }}
      {{- end }}
{{- end }}

{{/* watchNamespaces as a JSON list, once checked: a namespace the webhooks are never sent (Serin's
own, so that it can always recover, and webhooks.excludeNamespaces) cannot be served. */}}
{{- define "serin.watchNamespaces" -}}
{{- $never := append .Values.webhooks.excludeNamespaces .Release.Namespace }}
{{- range .Values.watchNamespaces }}
{{- if has . $never }}
{{- fail (printf "watchNamespaces names %s, which Serin never serves: its own namespace and webhooks.excludeNamespaces are never sent to its webhooks" .) }}
{{- end }}
{{- end }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- end }}

{{/* What the server does in the namespaces it serves, each rule with why: the rules of its
ClusterRole, or of its Role in each of watchNamespaces. */}}
{{- define "serin.namespacedRules" -}}
# The tick lists every Canary in one request; update and patch are for Canary metadata the
# server maintains (such as the finalizer that spec.revertOnDeletion needs).
- apiGroups: ["serin.dev"]
  resources: ["canaries"]
  verbs: ["get", "list", "update", "patch"]
# Everything between two ticks lives in the status, written whole (a PUT) with the
# resourceVersion read, before anything is acted on (so two racing ticks advance a Canary once).
- apiGroups: ["serin.dev"]
  resources: ["canaries/status"]
  verbs: ["update", "patch"]
# Analysis metrics with a templateRef, and alerts with a providerRef.
- apiGroups: ["serin.dev"]
  resources: ["metrictemplates", "alertproviders"]
  verbs: ["get", "list"]
# Targets (Deployments, DaemonSets, StatefulSets) are read (revision hash, readiness), labelled
# serin.dev/canary and scaled by patch (a DaemonSet by a node selector in its template); the
# `<name>-primary` of the same kind is created and replaced on promotion. Every ten minutes the
# tick lists the primaries it manages and deletes, with what else Serin made for it, any one
# that admission made for a Canary which was never stored (another webhook refused it).
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets", "statefulsets"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# Each promoted revision of a target is kept as a ControllerRevision owned by its Canary, so a
# deleted or edited primary is rebuilt from what was promoted; the oldest beyond ten are deleted.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "create", "patch", "delete"]
# The apex, -primary and -canary Services: created when missing, selectors repaired by patch;
# found by label and deleted only with the objects of a Canary that was never stored.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# ConfigMaps and Secrets the target's pods use are hashed to detect config-only revisions and
# copied to `<name>-primary` for the primary Deployment (created, then replaced on promotion;
# patched to add the Canary as owner of copies made while it was being admitted; deleted, by
# name, with the objects of a Canary that was never stored).
# Secrets must be readable in every namespace that has Canaries: no list or watch, by name only.
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get", "create", "update", "patch", "delete"]
# Events on Canaries, as `kubectl describe canary` shows them; a repeat is counted on the
# existing Event (read, then patched), not written as a new one. Listed for the page (/ui).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "get", "list", "patch"]
# The Istio router: one VirtualService (the traffic split) and two DestinationRules per Canary,
# read, and written whole with server-side apply (a patch) as the Canary says; deleted only with
# the objects of a Canary that was never stored.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "destinationrules"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# The Gateway API router: one HTTPRoute per Canary, the same way.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# The Contour and Traefik routers: one HTTPProxy or TraefikService per Canary, the same way.
- apiGroups: ["projectcontour.io"]
  resources: ["httpproxies"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
- apiGroups: ["traefik.io"]
  resources: ["traefikservices"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# The Linkerd router: one SMI TrafficSplit per Canary, the same way.
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# The NGINX router: reads the user's Ingress (spec.ingressRef), writes its canary copy.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# spec.autoscalerRef: the target's HPA is read and copied to `<name>-primary` for the primary
# (server-side apply, a patch); found by label and deleted only with the objects of a Canary
# that was never stored.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# The same for a KEDA ScaledObject, and the target's is patched with KEDA's paused-replicas
# annotation to hold the target at zero between analyses.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "create", "update", "patch", "delete"]
# MetricTemplates of type keptn: a KeptnMetric's value is read; an Analysis is created, read
# until Keptn has judged it, and deleted.
- apiGroups: ["metrics.keptn.sh"]
  resources: ["keptnmetrics"]
  verbs: ["get"]
- apiGroups: ["metrics.keptn.sh"]
  resources: ["analyses"]
  verbs: ["create", "get", "delete"]
{{- end }}

{{/* What no Role can grant, since these requests name no namespace: the reviews of the tokens of
callers of /tick, /replay, /ui and /metrics. */}}
{{- define "serin.reviewRules" -}}
# /tick, /replay, /ui and /metrics authenticate their caller's bearer token with a TokenReview ...
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# ... and ask whether that caller may tick or get canaries.serin.dev, or get /metrics, with a
# SubjectAccessReview.
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
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
