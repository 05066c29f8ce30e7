{{/* Name of the chart, or nameOverride. */}}
{{- define "stevedore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource: fullnameOverride, else the release name,
followed by "-<name>" unless the release name already contains it.
*/}}
{{- define "stevedore.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the manager's Deployment, ClusterRole and bindings. */}}
{{- define "stevedore.manager" -}}
{{- printf "%s-manager" (include "stevedore.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* chart label: name-version. */}}
{{- define "stevedore.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the manager pods; never change them (Deployment selectors are immutable). */}}
{{- define "stevedore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stevedore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{/* Labels of every resource. */}}
{{- define "stevedore.labels" -}}
helm.sh/chart: {{ include "stevedore.chart" . }}
{{ include "stevedore.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stevedore
{{- end }}

{{/* Name of the manager's ServiceAccount. */}}
{{- define "stevedore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stevedore.manager" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: the digest wins
over the tag, an empty tag is the chart's appVersion, an empty registry
leaves the reference without one. Call with (list $image .).
*/}}
{{- define "stevedore.image" -}}
{{- $img := index . 0 }}
{{- $root := index . 1 }}
{{- $repo := $img.repository }}
{{- if $img.registry }}
{{- $repo = printf "%s/%s" $img.registry $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The manager image reference. */}}
{{- define "stevedore.managerImage" -}}
{{- include "stevedore.image" (list .Values.image .) }}
{{- end }}

{{/* The agent image reference (--agent-image): registry and tag default to the manager's. */}}
{{- define "stevedore.agentImage" -}}
{{- $a := .Values.agentImage }}
{{- $img := dict "registry" (default .Values.image.registry $a.registry) "repository" $a.repository "tag" (default .Values.image.tag $a.tag) "digest" $a.digest }}
{{- include "stevedore.image" (list $img .) }}
{{- end }}

{{/* The RBAC rules of the manager, generated from the +kubebuilder:rbac markers (files/rules.yaml). */}}
{{- define "stevedore.rules" -}}
rules:
{{ regexReplaceAll "(?m)^#.*\n" ($.Files.Get "files/rules.yaml") "" | trim }}
{{- end }}
