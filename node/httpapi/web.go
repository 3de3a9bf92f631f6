package httpapi

import (
	"html/template"
	"net/http"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

var webPage = template.Must(template.New("mesh").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>drvmesh · {{.Status.Node}}</title>
<meta http-equiv="refresh" content="5">
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.succeeded{color:#080}.failed{color:#b00}.building{color:#06c}
code{font-size:12px}
</style></head><body>
<h1>drvmesh</h1>
<p>This is <b>{{.Status.Node}}</b>. Leader: <b>{{if .Status.Leader}}{{.Status.Leader}}{{else}}none (election under way){{end}}</b>,
term {{.Status.Term}}, commit index {{.Status.CommitIndex}}. Queued: {{.Status.Queued}}, running: {{.Status.Running}}.</p>
<p>Trust this mesh: <code>{{.Key}}</code></p>
<h2>Nodes</h2>
<table><tr><th>name</th><th>status</th><th>raft</th><th>systems</th><th>running</th><th>HTTP</th></tr>
{{range .Nodes}}<tr><td>{{.Name}}</td><td>{{.Status}}</td><td>{{.Raft}}</td><td>{{range .Systems}}{{.}} {{end}}</td><td>{{.Running}}/{{.MaxJobs}}</td><td>{{.HTTP}}</td></tr>
{{end}}</table>
<h2>Running</h2>
<table><tr><th>build</th><th>state</th><th>node</th><th>derivation</th><th>started</th></tr>
{{range .Running}}<tr><td><code>{{.ID}}</code></td><td class="{{.State}}">{{.State}}</td><td>{{.Node}}</td><td><code>{{.Derivation}}</code></td><td>{{ago .StartedAt}}</td></tr>
{{end}}</table>
<h2>Queue</h2>
<table><tr><th>build</th><th>priority</th><th>derivation</th><th>submitted</th></tr>
{{range .Queued}}<tr><td><code>{{.ID}}</code></td><td>{{.Priority}}</td><td><code>{{.Derivation}}</code></td><td>{{ago .CreatedAt}}</td></tr>
{{end}}</table>
<h2>Recent</h2>
<table><tr><th>build</th><th>state</th><th>node</th><th>derivation</th><th>finished</th></tr>
{{range .Recent}}<tr><td><code>{{.ID}}</code></td><td class="{{.State}}">{{.State}}</td><td>{{.Node}}</td><td><code>{{.Derivation}}</code></td><td>{{ago .FinishedAt}}</td></tr>
{{end}}</table>
</body></html>
`))

// handleWeb renders the mesh page.
func (api *API) handleWeb(w http.ResponseWriter, r *http.Request) {
	st := api.raft.State()
	list := func(state string, limit int) []*consensus.Build {
		bs, _ := st.ListBuilds(consensus.BuildFilter{State: state, Limit: limit})
		return bs
	}
	running := append(list(consensus.StateBuilding, 50), list(consensus.StateScheduled, 50)...)
	var recent []*consensus.Build
	for _, b := range list("", 200) {
		if consensus.Finished(b.State) {
			recent = append(recent, b)
			if len(recent) == 30 {
				break
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = webPage.Execute(w, map[string]any{
		"Status":  api.Status(),
		"Nodes":   api.nodesView(),
		"Key":     api.cfg.PublicKey,
		"Running": running,
		"Queued":  list(consensus.StateQueued, 30),
		"Recent":  recent,
	})
}
