"""The HTML pages: everything inline (styles, scripts, the SVG), so they work offline.

Stable element ids for tests: #file #graph #upload #upload-progress #progress ("NN%")
#status #error #jobs on the upload page; #status #progress #error #warnings #result-video
#timeline #reps #classes #download-jsonl #download-video #download-log on a job's page."""
from __future__ import annotations

import json
import time
from html import escape

from posegraph.webapp.uploads import GRAPHS, VIDEO_EXTENSIONS

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
fieldset{border:1px solid #ccc;border-radius:6px;padding:1em}label{display:block;margin:.5em 0}
button{font-size:1em;padding:.4em 1.2em}
#error{color:#a00;font-weight:bold;white-space:pre-wrap}#error:empty{display:none}
#warnings{color:#8a5a00;font-weight:bold}
.bar{width:100%;height:14px;background:#eee;border-radius:7px;overflow:hidden}
.bar>div{height:100%;background:#2c7be5;width:0;transition:width .2s}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .7em;text-align:left}
video{max-width:100%;max-height:70vh;background:#000}
.muted{color:#666}code{background:#f3f3f3;padding:0 .2em}
"""

# follows a job's server-sent events: shows state and percent, then calls onDone(job)
FOLLOW_JS = """
function $(id){return document.getElementById(id)}
function showError(text){$('error').textContent=text||''}
function describe(job){
  if(job.state==='queued')return 'queued (position '+job.position+'): '+job.message;
  if(job.state==='running')return 'running: '+job.message;
  if(job.state==='done')return job.warnings&&job.warnings.length?job.message:'done: '+job.frames_done+' frames';
  return 'failed: '+job.message;
}
function showJob(job){
  $('status').textContent=describe(job);
  $('status').dataset.state=job.state;
  $('progress').textContent=job.percent+'%';
  var bar=$('progress-bar');if(bar)bar.style.width=job.percent+'%';
}
function follow(id,onDone){
  var es=new EventSource('/api/jobs/'+id+'/events');
  es.onmessage=function(ev){
    var job=JSON.parse(ev.data);showJob(job);
    if(job.state==='done'){es.close();onDone(job)}
    else if(job.state==='failed'){es.close();showError(job.message)}
  };
  es.onerror=function(){if(es.readyState===EventSource.CLOSED)showError('lost the connection to the server')};
  return es;
}
"""

UPLOAD_JS = """
var MAX_BYTES=__MAX_BYTES__;
$('upload').addEventListener('click',function(){
  showError('');
  var f=$('file').files[0];
  if(!f){showError('choose a video file first');return}
  if(f.size>MAX_BYTES){showError('the file is '+(f.size/1e6).toFixed(1)+' MB; the limit is '+MAX_BYTES/1e6+' MB');return}
  $('upload').disabled=true;
  $('status').textContent='uploading';
  var xhr=new XMLHttpRequest();
  xhr.open('POST','/api/jobs?graph='+encodeURIComponent($('graph').value)+'&name='+encodeURIComponent(f.name));
  xhr.setRequestHeader('Content-Type','application/octet-stream');
  xhr.upload.onprogress=function(e){if(e.lengthComputable){
    $('upload-progress').textContent='upload '+Math.floor(e.loaded*100/e.total)+'%'}};
  xhr.onload=function(){
    var body;try{body=JSON.parse(xhr.responseText)}catch(e){body={error:'the server answered '+xhr.status}}
    if(xhr.status>=400){showError(body.error||('the server answered '+xhr.status));$('status').textContent='refused';$('upload').disabled=false;return}
    $('upload-progress').textContent='upload 100%';
    showJob(body);
    follow(body.id,function(job){location.href=job.url});
  };
  xhr.onerror=function(){showError('the upload failed: the connection was closed (is the server running, is the file within the limit?)');
    $('status').textContent='refused';$('upload').disabled=false};
  xhr.send(f);
});
"""


def _page(title: str, body: str, script: str = "") -> bytes:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f'<style>{STYLE}</style></head><body>{body}'
            f'<script>{FOLLOW_JS}{script}</script></body></html>').encode()


def describe(job: dict) -> str:
    """The status line, as the page's script writes it (describe() in FOLLOW_JS)."""
    if job["state"] == "queued":
        return f'queued (position {job["position"]}): {job["message"]}'
    if job["state"] == "running":
        return f'running: {job["message"]}'
    if job["state"] == "done":
        return job["message"] if job.get("warnings") else f'done: {job["frames_done"]} frames'
    return f'failed: {job["message"]}'


def state_label(job: dict) -> str:
    """A job's state for the jobs table: a done job that warned says so."""
    return "done with warnings" if job["state"] == "done" and job.get("warnings") else job["state"]


def _progress(job: dict | None) -> str:
    percent = job["percent"] if job else 0
    return (f'<p><span id="status" data-state="{escape(job["state"]) if job else ""}">'
            f'{escape(describe(job)) if job else "choose a file"}</span> '
            f'<strong id="progress">{percent}%</strong></p>'
            f'<div class="bar"><div id="progress-bar" style="width:{percent}%"></div></div>')


def upload_page(jobs: list[dict], max_bytes: int) -> bytes:
    options = "".join(f'<option value="{escape(name)}">{escape(name)}: {escape(text)}</option>' for name, (_, text) in GRAPHS.items())
    accept = ",".join(("video/*",) + VIDEO_EXTENSIONS)
    rows = "".join(
        f'<tr><td><a href="/jobs/{job["id"]}">{escape(job["name"])}</a></td><td>{escape(job["graph"])}</td>'
        f'<td>{escape(state_label(job))}</td><td>{time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created"]))}</td></tr>'
        for job in jobs[:20])
    listing = (f'<h2>Jobs</h2><table id="jobs"><tr><th>file</th><th>graph</th><th>state</th><th>uploaded</th></tr>{rows}</table>'
               if rows else '<table id="jobs"></table>')
    body = f"""<h1>PoseGraph: pose and action recognition on a video</h1>
<fieldset><legend>Upload a video</legend>
<label>Video file ({escape(' '.join(VIDEO_EXTENSIONS))}, at most {max_bytes / 1e6:g} MB):
 <input type="file" id="file" accept="{escape(accept)}"></label>
<label>Classifier graph: <select id="graph">{options}</select></label>
<button id="upload" type="button">Upload and run</button> <span id="upload-progress" class="muted"></span>
</fieldset>
{_progress(None)}
<p id="error" role="alert"></p>
<p class="muted">Jobs run one at a time on this machine; the page follows the job and then shows its result.</p>
{listing}"""
    return _page("PoseGraph", body, UPLOAD_JS.replace("__MAX_BYTES__", str(int(max_bytes))))


def result_page(job: dict, summary: dict | None, svg: str | None) -> bytes:
    jid = job["id"]
    head = (f'<p><a href="/">&larr; upload another video</a></p>'
            f'<h1>{escape(job["name"])} <span class="muted">({escape(job["graph"])})</span></h1>'
            f'{_progress(job)}<p id="error" role="alert">{escape(job["message"]) if job["state"] == "failed" else ""}</p>')
    if job.get("warnings"):
        head += ('<ul id="warnings" role="alert">'
                 + "".join(f"<li>warning: {escape(text)}</li>" for text in job["warnings"]) + "</ul>")
    log = f'<p><a id="download-log" href="/jobs/{jid}/files/runner.log">runner log</a></p>' if "runner.log" in job["files"] else ""
    if job["state"] != "done":
        script = "" if job["state"] == "failed" else f"follow({json.dumps(jid)},function(){{location.reload()}});"
        return _page(f"PoseGraph job {jid}", head + log, script)
    reps = (summary or {}).get("reps")
    if reps:
        rep_rows = "".join(f'<tr><td>{escape(str(name))}</td><td class="reps-count" data-class="{escape(str(name))}">{int(count or 0)}</td></tr>'
                           for name, count in reps.items())
    else:
        rep_rows = '<tr><td colspan="2" class="muted">this graph counts no repetitions</td></tr>'
    class_rows = "".join(f'<tr><td>{escape(name)}</td><td>{count}</td></tr>' for name, count in (summary or {}).get("classes", {}).items())
    body = f"""{head}
<video id="result-video" controls preload="metadata" src="/jobs/{jid}/files/annotated.mp4"></video>
<p><a id="download-video" href="/jobs/{jid}/files/annotated.mp4?download=1" download="annotated.mp4">download annotated.mp4</a> &middot;
<a id="download-jsonl" href="/jobs/{jid}/files/records.jsonl?download=1" download="records.jsonl">download records.jsonl</a> (one JSON record per frame)</p>
<h2>Timeline</h2>
{svg or ''}
<p class="muted" id="timeline-key">"warming up": a person is in the frame but the classifier has no answer yet (its window of frames is still filling); "no pose": no person was found.</p>
<h2>Repetitions</h2>
<table id="reps"><tr><th>class</th><th>repetitions</th></tr>{rep_rows}</table>
<h2>Frames per class</h2>
<table id="classes"><tr><th>class</th><th>frames</th></tr>{class_rows}</table>
{log}"""
    return _page(f"PoseGraph job {jid}", body)


def not_found_page(text: str) -> bytes:
    return _page("not found", f'<p><a href="/">&larr; upload a video</a></p><p id="error" role="alert">{escape(text)}</p>')
