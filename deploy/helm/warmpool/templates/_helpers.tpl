{{- define "warmpool.name" -}}
{{- if contains "warmpool" .Release.Name }}{{ .Release.Name }}{{ else }}{{ .Release.Name }}-warmpool{{ end -}}
{{- end -}}
{{- define "warmpool.labels" -}}
app.kubernetes.io/name: warmpool
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "warmpool.selector" -}}
app.kubernetes.io/name: warmpool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{/* The image, pinned: by digest, or by a tag that is not "latest". */}}
{{- define "warmpool.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag \"latest\" is refused: pin a release (or image.digest), so that every pod runs the same code" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}
{{/* The Secret holding the admin token. */}}
{{- define "warmpool.adminSecret" -}}
{{- if .Values.adminToken.existingSecret -}}
{{ .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.create -}}
{{ include "warmpool.name" . }}-admin
{{- else -}}
{{- fail "the admin listener faces the pod network and needs a token: set adminToken.create or adminToken.existingSecret" -}}
{{- end -}}
{{- end -}}
