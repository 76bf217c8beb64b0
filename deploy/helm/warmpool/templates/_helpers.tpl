{{- define "warmpool.name" -}}
{{- if contains "warmpool" .Release.Name }}{{ .Release.Name }}{{ else }}{{ .Release.Name }}-warmpool{{ end -}}
{{- end -}}
{{- define "warmpool.labels" -}}
app.kubernetes.io/name: warmpool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "warmpool.selector" -}}
app.kubernetes.io/name: warmpool
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
