"""The MLflow UI (3.17) driven in headless Chromium: Debian's ``chromium`` and its
``chromedriver`` through Selenium, named by path (Selenium Manager is never asked to
download a browser or a driver). Used by tests/orchestrator/test_ui_browser.py and by
scripts/ui-screenshots (the README's pictures).

``OrchUI`` runs ``orch ui`` as a subprocess and reads the address it prints; ``UIPages``
opens one view of the UI at a time, waits (explicitly, on the text the view must show)
and saves a screenshot of it. The routes are the UI's own (its hash router,
mlflow/server/js): ``#/experiments/ID/runs``, ``#/experiments/ID/runs/RUN`` (overview),
``…/RUN/model-metrics``, ``…/RUN/artifacts/PATH``; ``?workflowType=machine_learning``
selects the UI's "Model training" side (MLflow 3.17's UI opens every experiment on its
GenAI side otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.tracking_server import descendants

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
INSTALL = "chromium chromium-driver"  # Debian's package names (scripts/system-deps.sh installs them)
START_WITHIN_S = 240.0  # orch ui: MLflow's server on a loaded 2-core machine
WAIT_S = 60.0  # one view of the UI: a loaded machine renders slowly
ML = "workflowType=machine_learning"
# the MLflow Assistant panel opens itself on a first visit and covers a third of the page
_NO_ASSISTANT = "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"


class BrowserMissing(Exception):
    """Chromium or its driver is not installed; the message says what to install."""


def _which(candidates: tuple[str, ...]) -> str | None:
    for c in candidates:
        found = c if os.path.isabs(c) and os.access(c, os.X_OK) else shutil.which(c)
        if found:
            return found
    return None


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or BrowserMissing naming the packages to install."""
    browser, driver = _which(CHROMIUM), _which(CHROMEDRIVER)
    missing = [name for name, path in (("chromium", browser), ("chromium-driver", driver)) if path is None]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not installed: the MLflow UI test drives Debian's headless "
                             f"Chromium (`apt-get install {INSTALL}`; scripts/system-deps.sh does it as root)")
    return browser, driver


def chromium(width: int = 1600, height: int = 1000):
    """Headless Chromium under Selenium, binary and driver given by path; nothing downloaded."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = browser_paths()
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--no-first-run"):
        options.add_argument(arg)
    d = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_ASSISTANT})
    return d


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class OrchUI:
    """``orch ui …`` as a subprocess; ``url`` and ``experiment_urls`` from what it prints.
    ``stop()`` sends SIGTERM (what Ctrl-C or a service manager sends) and returns the
    processes that were under it and outlived it (none, if it stops cleanly)."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None):
        """``env``: the whole environment (default: this process's)."""
        self.argv, self.log = argv, log
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.experiment_urls: dict[str, str] = {}
        self.workers: list[int] = []

    def start(self) -> "OrchUI":
        self._from = self.log.stat().st_size if self.log.exists() else 0  # the log may hold an earlier start's
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            return self._wait_started()
        except BaseException:
            self.stop()
            raise

    def _wait_started(self) -> "OrchUI":
        deadline = time.monotonic() + START_WITHIN_S
        while not self.url:
            with open(self.log, "rb") as f:
                f.seek(self._from)
                text = f.read().decode(errors="replace")
            m = re.search(r"^MLflow UI: (http://\S+)", text, re.M)
            if m:
                self.url = m.group(1)
                self.experiment_urls = dict(re.findall(r"^experiment '(.+)': (http://\S+)$", text, re.M))
            elif self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.argv)} exited ({self.proc.returncode}):\n{text[-3000:]}")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(self.argv)}: no address printed within {START_WITHIN_S:.0f} s:\n"
                                   f"{text[-3000:]}")
            else:
                time.sleep(0.3)
        self.workers = descendants(self.proc.pid)  # mlflow server, its uvicorn
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, within_s: float = 60.0) -> list[int]:
        proc, self.proc = self.proc, None
        if proc is None:
            return []
        under = sorted(set(self.workers) | set(descendants(proc.pid)))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(within_s)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while any(alive(p) for p in under) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in under if alive(p)]
        for pid in [*left, proc.pid]:  # whatever is left must not outlive the test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)
        return left


def orch_ui_argv(workdir: Path, port: int = 0) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "ui", "--workdir", str(workdir), "--port", str(port)]


@dataclass
class View:
    name: str
    url: str
    text: str  # the page's visible text once it showed what it must
    screenshot: Path
    points: int | None = None  # a metric chart: the markers it plots (one per step)
    image: tuple[int, int] | None = None  # an image artifact: the natural size of the one shown


class UIPages:
    """One view of the MLflow UI at a time: open it, wait for the text it must show, save a
    screenshot as ``OUTDIR/NN-NAME.png``."""

    def __init__(self, driver, base_url: str, outdir: Path):
        self.d, self.base, self.outdir = driver, base_url.rstrip("/"), outdir
        outdir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    # -- waiting
    def body(self) -> str:
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.common.by import By

        try:
            return self.d.find_element(By.TAG_NAME, "body").text
        except (StaleElementReferenceException, WebDriverException):
            return ""

    def wait_text(self, *needles: str, absent: tuple[str, ...] = (), some: tuple[list[str], int] = ([], 0),
                  what: str = "") -> str:
        """The visible text once it holds every needle, at least ``some[1]`` of the names
        ``some[0]`` (a long table shows only its first rows) and none of ``absent``; a
        TimeoutException naming what was missing, and what the page showed, otherwise."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        names, k = some
        needles = (*needles, *names) if k >= len(names) else needles

        def ready(_):
            text = self.body()
            return text if (all(n in text for n in needles) and not any(a in text for a in absent)
                            and sum(n in text for n in names) >= k) else False

        try:
            return WebDriverWait(self.d, WAIT_S, poll_frequency=0.3).until(ready)
        except TimeoutException:
            text = self.body()
            self.shot(f"timeout-{what or 'view'}")
            missing = [n for n in needles if n not in text]
            shown = [a for a in absent if a in text]
            raise TimeoutException(f"{what or self.d.current_url}: after {WAIT_S:.0f} s missing {missing}"
                                   f"{f', showing {shown}' if shown else ''}; the page showed:\n{text[:2000]}") from None

    def wait_for(self, condition, what: str):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.d, WAIT_S, poll_frequency=0.3).until(condition)
        except TimeoutException:
            self.shot(f"timeout-{what}")
            raise TimeoutException(f"{what}: not found within {WAIT_S:.0f} s on {self.d.current_url}; the page "
                                   f"showed:\n{self.body()[:2000]}") from None

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.outdir / f"{self.n:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def open(self, url: str) -> None:
        """A full page load (not a hash change inside the running app: each view starts from
        the server's state, as a link opened in a new tab does)."""
        self.d.get("about:blank")
        self.d.get(url)

    # -- the views
    def runs_page(self, experiment_url: str, run_names: list[str]) -> View:
        """The experiment as its address opens: its training runs listed (not the GenAI
        overview of traces)."""
        self.open(experiment_url)
        text = self.wait_text("Run Name", *run_names, absent=("No data available",), what="experiment runs page")
        return View("experiment-runs", self.d.current_url, text, self.shot("experiment-runs"))

    def expand_children(self, parent_name: str, child_names: list[str]) -> View:
        """The runs table with the parent's row expanded: its children nested under it
        (every child, or the first rows of a long sweep's)."""
        from selenium.webdriver.common.by import By

        row = f"//div[@role='row'][.//a[normalize-space(.)={_xpath_literal(parent_name)}]]"
        if not any(n in self.body() for n in child_names):  # folded (a fresh browser's view)
            button = self.wait_for(lambda d: _first_displayed(d.find_elements(By.XPATH, f"{row}//button")),
                                   f"the expander of run {parent_name!r}")
            button.click()
        text = self.wait_text(parent_name, some=(child_names, min(len(child_names), 8)),
                              what="parent run's children in the runs table")
        return View("parent-with-children", self.d.current_url, text, self.shot("parent-with-children"))

    def run_overview(self, experiment_id: str, run_id: str, must_show: list[str],
                     children: list[str] | None = None) -> View:
        children = children or []
        self.open(f"{self.base}/#/experiments/{experiment_id}/runs/{run_id}?{ML}")
        text = self.wait_text("Overview", *must_show, some=(children, min(len(children), 8)),
                              what=f"run {run_id} overview")
        return View("parent-overview", self.d.current_url, text, self.shot("parent-overview"))

    def metric_chart(self, experiment_id: str, run_id: str, run_name: str, metric: str) -> View:
        """The run's model-metrics tab filtered to ``metric``: its chart over the steps."""
        from selenium.webdriver.common.by import By

        self.open(f"{self.base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{ML}")
        search = self.wait_for(lambda d: _first_displayed(d.find_elements(
            By.CSS_SELECTOR, "input[placeholder='Search metric charts']")), "the metric charts' search box")
        search.send_keys(metric)
        text = self.wait_text(f"{run_name} ({metric})", "Step", what=f"the {metric} chart of {run_name}")
        points = self.wait_for(lambda d: self.chart_points(metric) or False, f"the points of the {metric} chart")
        return View(f"{run_name}-{metric}", self.d.current_url, text, self.shot(f"child-{metric}-chart"), points=points)

    def chart_points(self, metric: str) -> int:
        """The markers plotted in the chart titled ``metric`` (plotly: one per step)."""
        from selenium.webdriver.common.by import By

        title = _xpath_literal(metric)
        cards = self.d.find_elements(By.XPATH, f"//*[normalize-space(text())={title}]/ancestor::*"
                                               f"[.//*[contains(@class,'plot-container')]][1]")
        return max((len(c.find_elements(By.CSS_SELECTOR, "g.points path.point")) for c in cards), default=0)

    def artifact(self, experiment_id: str, run_id: str, path: str, must_show: list[str], name: str) -> View:
        """The run's artifacts tab with ``path`` selected (its preview beside the tree; for
        an image, once the image has loaded)."""
        self.open(f"{self.base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}?{ML}")
        text = self.wait_text("Path: ", path.rsplit("/", 1)[-1], *must_show, absent=("No Artifacts Recorded",),
                              what=f"artifact {path} of run {run_id}")
        image = self.image_shown() if path.lower().endswith((".png", ".jpg", ".jpeg")) else None
        return View(name, self.d.current_url, text, self.shot(name), image=image)

    def image_shown(self) -> tuple[int, int]:
        """The natural size of the largest image the artifact preview shows (0, 0: none)."""
        from selenium.webdriver.common.by import By

        def loaded(d):
            sizes = [(int(i.get_property("naturalWidth") or 0), int(i.get_property("naturalHeight") or 0))
                     for i in d.find_elements(By.CSS_SELECTOR, "img") if i.is_displayed()]
            big = max(sizes, default=(0, 0), key=lambda s: s[0] * s[1])
            return big if big[0] > 100 else False

        return self.wait_for(loaded, "the artifact's image, loaded")


@dataclass
class Sweep:
    """What the tour shows of one experiment: its sweep's parent run, the children, one
    child's confusion PNG and the parent's table."""
    experiment_id: str
    experiment_url: str
    parent_id: str
    parent_name: str
    children: dict[str, str]  # run name -> run id
    child: str  # the child shown (first by name)
    confusion: str  # its confusion PNG (artifact path)
    table: str  # the parent's table (artifact path, reports/*.md)
    table_cells: list[str]  # the table's body cells, as its Markdown holds them


def markdown_cells(text: str) -> list[str]:
    """The body cells of the Markdown tables in ``text`` (header and rule rows left out)."""
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.strip().startswith("|")]
    body = [r for r in rows if not all(set(c.strip()) <= set("-: ") for c in r)][1:]
    return [c.strip() for r in body for c in r if c.strip()]


def find_sweep(client, experiment: str | None, base_url: str) -> Sweep:
    """The latest sweep (parent run, ``orch.run_kind=sweep``) of ``experiment`` (default:
    the newest experiment that has one) and what the tour shows of it."""
    import tempfile

    from orchestrator.reports.from_mlflow import parent_runs
    from trainables.tracking import PARENT_RUN_TAG, RUN_KIND_TAG

    exps = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments(
        order_by=["creation_time DESC"])
    for exp in exps:
        if exp is None:
            raise SystemExit(f"experiment {experiment!r}: not found")
        parents = parent_runs(client, exp.experiment_id)  # the most recently run first, as `orch table` picks
        if parents:
            break
    else:
        raise SystemExit(f"no sweep (a parent run tagged {RUN_KIND_TAG}=sweep) in {experiment or 'any experiment'}")
    parent = parents[0]
    kids = client.search_runs([exp.experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'",
                              max_results=5000)
    if not kids:
        raise SystemExit(f"sweep {parent.info.run_name!r} ({parent.info.run_id}) has no child runs")
    children = {r.info.run_name: r.info.run_id for r in kids}
    child = sorted(children)[0]
    pngs = [f.path for f in client.list_artifacts(children[child])
            if f.path.startswith("confusion_") and f.path.endswith(".png")]
    tables = [f.path for f in client.list_artifacts(parent.info.run_id, "reports") if f.path.endswith(".md")]
    if not tables:  # a confusion PNG may be missing (runs made before orch drew them): that view is left out
        raise SystemExit(f"sweep {parent.info.run_name!r}: no reports/*.md on its parent run")
    with tempfile.TemporaryDirectory() as tmp:
        cells = markdown_cells(Path(client.download_artifacts(parent.info.run_id, tables[0], tmp)).read_text())
    from orchestrator.tracking_server import runs_page

    return Sweep(exp.experiment_id, runs_page(base_url.rstrip("/"), exp.experiment_id), parent.info.run_id,
                 parent.info.run_name, children, child, sorted(pngs)[0] if pngs else "", tables[0], cells)


def tour(pages: "UIPages", sweep: Sweep, metric: str = "val_uf1") -> dict[str, View]:
    """Every view, in a user's order: the experiment's runs (the parent collapsed), the
    parent expanded, the parent's overview, a child's ``metric`` chart, its confusion PNG,
    the parent's table."""
    views = {"runs": pages.runs_page(sweep.experiment_url, [sweep.parent_name])}
    views["children"] = pages.expand_children(sweep.parent_name, sorted(sweep.children))
    views["parent"] = pages.run_overview(sweep.experiment_id, sweep.parent_id, ["Child runs"], sorted(sweep.children))
    views["metric"] = pages.metric_chart(sweep.experiment_id, sweep.children[sweep.child], sweep.child, metric)
    if sweep.confusion:
        views["confusion"] = pages.artifact(sweep.experiment_id, sweep.children[sweep.child], sweep.confusion, [],
                                            "child-artifact-confusion")
    views["table"] = pages.artifact(sweep.experiment_id, sweep.parent_id, sweep.table, sweep.table_cells,
                                    "parent-artifact-table")
    return views


def main(argv: list[str] | None = None) -> int:
    """scripts/ui-screenshots WORKDIR OUTDIR [EXPERIMENT]: start ``orch ui`` over the
    workdir, take the tour's screenshots into OUTDIR, stop it."""
    import argparse

    from mlflow import MlflowClient

    ap = argparse.ArgumentParser(prog="scripts/ui-screenshots", description=main.__doc__)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("experiment", nargs="?", help="default: the newest experiment with a sweep")
    a = ap.parse_args(argv)
    workdir, outdir = a.workdir.expanduser().resolve(), a.outdir.expanduser().resolve()
    if not (workdir / "mlflow.db").exists():
        raise SystemExit(f"{workdir / 'mlflow.db'}: not found (is {workdir} an orch workdir?)")
    outdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = OrchUI(orch_ui_argv(workdir), outdir / "orch-ui.log", env=env).start()
    try:
        sweep = find_sweep(MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}"), a.experiment, ui.url)
        d = chromium()
        try:
            for view in tour(UIPages(d, ui.url, outdir), sweep).values():
                print(f"{view.screenshot}  ({view.url})")
        finally:
            d.quit()
    finally:
        left = ui.stop()
    if left:
        print(f"warning: processes {left} outlived orch ui (killed)", file=sys.stderr)
    return 0


def _first_displayed(elements):
    shown = [e for e in elements if e.is_displayed()]
    return shown[0] if shown else False


def _xpath_literal(s: str) -> str:
    if "'" not in s:
        return f"'{s}'"
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in s.split("'")) + ")"


if __name__ == "__main__":
    sys.exit(main())
