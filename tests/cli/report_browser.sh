#!/usr/bin/env bash
# `hrm report` of a tiny run (with all three analyses) rendered by headless Chromium: the page's script ran without
# error, every plot draws the number of points its data has, the curves have one point per logged row, and a
# screenshot is written. Usage: report_browser.sh HRM_BINARY WORK_DIR
set -euo pipefail
HRM=$1
WORK=$2
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$BROWSER" ]; then echo "SKIPPED: no chromium (scripts/setup.sh installs it)"; exit 77; fi
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
make_sudoku4 120 16 3
write_tiny_arch 0
printf 'defaults: {arch: tiny}\ndata_path: data\nglobal_batch_size: 8\nepochs: 4\neval_interval: 2\nlr_warmup_steps: 2\n' \
  > configs/toy.yaml
"$HRM" --threads 1 train configs/toy.yaml run_dir=run > train.log 2>&1
grep -q "report: run/report.html" train.log || { echo "FAIL: training did not write its report"; cat train.log; exit 1; }
"$HRM" --threads 1 analyze residuals --checkpoint run > /dev/null
"$HRM" --threads 1 analyze pr --checkpoint run --trajectories 12 > /dev/null
"$HRM" --threads 1 analyze scaling --checkpoint run --max-steps 1,2,3 > /dev/null
for a in residuals pr scaling; do [ -s "run/analysis/$a.json" ] || { echo "FAIL: no run/analysis/$a.json"; exit 1; }; done
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$WORK/profile")
timeout 120 "$BROWSER" "${flags[@]}" --dump-dom "file://$WORK/run/report.html" > dom.html 2> browser.log || true
timeout 120 "$BROWSER" "${flags[@]}" --window-size=1400,3000 --screenshot="$WORK/report.png" \
  "file://$WORK/run/report.html" > /dev/null 2>> browser.log || true
[ -s report.png ] || { echo "FAIL: no screenshot"; tail -5 browser.log; exit 1; }
python3 - "$WORK" <<'PY'
import json, re, sys
from html.parser import HTMLParser
work = sys.argv[1]
dom = open(work + "/dom.html").read()
class Page(HTMLParser):
    def __init__(self):
        super().__init__(); self.body = {}; self.series = []; self.current = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body": self.body = a
        if "series" in a.get("class", "").split():
            s = {"name": a["data-name"], "n": int(a["data-n"]), "drawn": 0, "line": tag == "polyline"}
            if tag == "polyline": s["drawn"] = len(a.get("points", "").split())
            self.series.append(s); self.current = s if tag == "g" else None
        if tag == "circle" and self.current is not None: self.current["drawn"] += 1
    def handle_endtag(self, tag):
        if tag == "g": self.current = None
p = Page(); p.feed(dom)
fail = []
if p.body.get("data-ready") != "1": fail.append("the page script did not finish")
if p.body.get("data-errors"): fail.append("script errors: " + p.body["data-errors"])
for s in p.series:
    if s["drawn"] != s["n"]: fail.append(f"series {s['name']}: {s['drawn']} points drawn, data has {s['n']}")
rows = [json.loads(l) for l in open(work + "/run/metrics.jsonl")]
train = len([r for r in rows if r["split"] == "train"]); evals = len([r for r in rows if r["split"] == "eval"])
curves = [s for s in p.series if s["name"] == "train"]
if not curves or any(s["n"] != train for s in curves): fail.append(f"train curves should have {train} points each")
if any(s["n"] != evals for s in p.series if s["name"] == "eval"): fail.append(f"eval points should be {evals}")
res = json.load(open(work + "/run/analysis/residuals.json"))
want = sum(len(seg) for seg in res["z_L"])
got = [s["n"] for s in p.series if s["name"] == "residual of z_L"]
if got != [want]: fail.append(f"residual plot of z_L has {got}, want [{want}]")
if not any(s["name"] == "exact accuracy" and s["n"] == 3 for s in p.series): fail.append("scaling plot missing")
if fail:
    print("FAIL: " + "; ".join(fail)); sys.exit(1)
print(f"PASS: report rendered in Chromium: {len(p.series)} series, {train} train rows, {evals} evaluations, no script error")
PY
