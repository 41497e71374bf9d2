"""Real Prometheus and Alertmanager (Debian's) on loopback ports, with private storage and a temp
config each, for tests that scrape a real run. Stopped by the fixture that started them."""

import json
import subprocess
import time
import urllib.parse
import urllib.request

from conftest import need_tool
from support import free_port


def wait_for(cond, what: str, hang_guard_s: float, proc: subprocess.Popen | None = None):
    """Poll ``cond`` until true; the deadline is a hang guard only (the host is loaded)."""
    deadline = time.monotonic() + hang_guard_s
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Prometheus:
    """Debian's prometheus on loopback, private storage, native histograms on, 1 s scrapes and rule
    evaluations; ``rule_files`` and ``alertmanager`` (HOST:PORT) for alerting."""

    def __init__(self, tmp_path, targets: list[str], native: bool = True, rule_files=(),
                 alertmanager: str | None = None):  # fmt: skip
        exe = need_tool("prometheus", install="apt-get install prometheus")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        text = (
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: tickscope\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        if rule_files:
            text += f"rule_files: {json.dumps([str(f) for f in rule_files])}\n"
        if alertmanager:
            text += f"alerting: {{alertmanagers: [{{static_configs: [{{targets: [{json.dumps(alertmanager)}]}}]}}]}}\n"
        config.write_text(text)
        self.log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        argv = [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        if native:  # without it, Prometheus 2.42 asks for the text format only
            argv.append("--enable-feature=native-histograms")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self._get("/-/ready") is not None, "prometheus ready", 60)

    def _get(self, path: str):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read()
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}") from None
            return None

    def query(self, promql: str, at: float | None = None) -> list:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self._get("/api/v1/query?" + urllib.parse.urlencode(params))
        assert body is not None, promql
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def wait_for(self, cond, what: str, hang_guard_s: float):
        wait_for(cond, what, hang_guard_s, self.proc)

    def stop(self):
        stop(self.proc)
        self.log.close()


class Alertmanager:
    """Debian's prometheus-alertmanager on loopback, clustering off, one webhook receiver; groups
    wait 1 s so a firing alert is delivered within seconds."""

    def __init__(self, tmp_path, webhook_url: str):
        exe = need_tool(
            "prometheus-alertmanager", "alertmanager", install="apt-get install prometheus-alertmanager"
        )
        self.port = free_port()
        config = tmp_path / "alertmanager.yml"
        config.write_text(
            "route: {receiver: hook, group_by: [alertname, stage], group_wait: 1s, group_interval: 1s,"
            " repeat_interval: 1h}\n"
            f"receivers: [{{name: hook, webhook_configs: [{{url: {json.dumps(webhook_url)}}}]}}]\n"
        )
        self.log = open(tmp_path / "alertmanager.log", "w")  # noqa: SIM115 - closed in stop()
        argv = [exe, f"--config.file={config}", f"--storage.path={tmp_path / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, "alertmanager ready", 60, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        stop(self.proc)
        self.log.close()
