"""The Python blocks of docs/flow-control.md run as they are, in order, and
do what the page says."""

from __future__ import annotations

import re

from taskq import JobState
from tests.conftest import ROOT

DOC = ROOT / "docs" / "flow-control.md"


def test_the_flow_control_page_runs(monkeypatch, redis_url, namespace, capsys):
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_NAMESPACE", namespace)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    scope: dict[str, object] = {"__name__": "flow_doc"}
    try:
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), scope)
        app = scope["app"]
        assert "[('default', True, 4, 0)]" in capsys.readouterr().out
        jobs = app.control.list_jobs("queued")
        assert {j.task for j in jobs} == {"flow_doc.call_partner_api", "flow_doc.send_sms",
                                          "flow_doc.refresh_cache", "flow_doc.render_video"}
        assert all(j.state == JobState.QUEUED for j in jobs)
        opts = app.tasks["flow_doc.send_sms"].options
        assert opts.rate_limit == (5, 1.0) and opts.rate_burst == 1
    finally:
        if "app" in scope:
            scope["app"].backend.delete_namespace()
            scope["app"].close()
