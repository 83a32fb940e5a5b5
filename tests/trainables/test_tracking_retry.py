"""Retries through tracking outages: the backoff itself (fake clock), and a trial's run on
a real SQLite store behind a narrow fake that drops requests or their responses."""

from __future__ import annotations

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from trainables.tracking import OPEN_ID_TAG, TrackingConfig, TrialRun
from trainables.tracking_retry import MAX_WAIT_S, Backoff, TrackingUnavailable, is_transient

DOWN = MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed with "
                       "exception HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded")


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, s):
        self.slept.append(s)
        self.now += s

    def __call__(self):
        return self.now


def test_backoff_doubles_its_waits_up_to_a_cap_and_gives_up_after_its_patience():
    clock = FakeClock()
    b = Backoff(patience=120, sleep=clock.sleep, clock=clock)
    fails = iter([DOWN] * 5)

    def call():
        e = next(fails, None)
        if e:
            raise e
        return "ok"

    assert b.call(call, "x") == "ok"
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0]
    clock.slept.clear()
    with pytest.raises(TrackingUnavailable, match=r"did not answer for \d+ s \(patience 120 s"):
        b.call(lambda: (_ for _ in ()).throw(DOWN), "logging 3 metrics")
    assert max(clock.slept) == MAX_WAIT_S and sum(clock.slept) <= 120
    assert sum(clock.slept) > 120 - 2 * MAX_WAIT_S  # it waited (nearly) its whole patience


def test_a_refused_request_is_not_retried():
    clock = FakeClock()
    b = Backoff(patience=120, sleep=clock.sleep, clock=clock)
    refused = MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE)
    with pytest.raises(MlflowException, match="bad param"):
        b.call(lambda: (_ for _ in ()).throw(refused), "x")
    assert clock.slept == []


@pytest.mark.parametrize("exc, transient", [
    (DOWN, True),
    (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), True),
    (RestException({"error_code": "INTERNAL_ERROR", "message": "server error"}), True),
    (RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}), False),
    (MlflowException("a bug on this side"), False),  # uncoded: INTERNAL_ERROR, but no server said so
    (requests.exceptions.ConnectionError("refused"), True),
    (ConnectionRefusedError(), True),
    # a response that was not JSON (a proxy's page, MLflow's Host-header refusal): by its status
    (MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
                     "Response body: 'Invalid Host header'"), False),
    (MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 404 != 200"), False),
    (MlflowException("API request to endpoint /api/2.0/mlflow/runs/create failed with error code 502 != 200"), True),
])
def test_what_counts_as_an_outage(exc, transient):
    assert is_transient(exc) is transient


def test_http_errors_by_status():
    def http(status):
        r = requests.Response()
        r.status_code = status
        return requests.exceptions.HTTPError(response=r)

    assert is_transient(http(503)) and is_transient(http(429)) and not is_transient(http(404))


class Flaky:
    """A real MlflowClient, except while ``down`` (requests fail, as MLflow raises them once
    its HTTP retries are spent) or for ``lost`` calls (done, but the response lost)."""

    def __init__(self, client: MlflowClient):
        self.client, self.down, self.lost = client, False, {}

    def __getattr__(self, name):
        real = getattr(self.client, name)

        def call(*a, **kw):
            if self.down:
                raise DOWN
            out = real(*a, **kw)
            if self.lost.get(name, 0) > 0:
                self.lost[name] -= 1
                raise DOWN  # it landed; the caller cannot know
            return out

        return call


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("retry")
    return f"sqlite:///{d / 'mlflow.db'}", d  # one database for the module (creating one costs seconds)


@pytest.fixture
def tracking(db, request):
    uri, d = db
    name = request.node.name[:60]
    exp = MlflowClient(uri).create_experiment(name, artifact_location=(d / name).as_uri())
    return TrackingConfig(uri, exp, "sweep/seed0-N4/abc", "sweep:1", "seed0-N4")


def _steps(uri, run_id, key="val_uf1"):
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_epochs_logged_during_an_outage_are_kept_and_delivered_once(tracking):
    run = TrialRun.open(tracking, {"seed": "0"})
    run.unbuffered = True  # every epoch flushes at once
    flaky = run.client = Flaky(run.client)
    run.log_epoch(1, {"val_uf1": 0.1, "lr": 1.0})
    flaky.down = True
    run.log_epoch(2, {"val_uf1": 0.2, "lr": 1.0})  # training goes on; nothing raised
    run.log_epoch(3, {"val_uf1": 0.3, "lr": 1.0})
    assert run.flush() is False and len(run.pending_records()) == 4
    flaky.down = False
    flaky.lost["log_batch"] = 1  # the next batch lands but its response is lost ...
    run.log_epoch(4, {"val_uf1": 0.4, "lr": 1.0})
    assert len(run.pending_records()) == 6  # ... so it is kept and sent again, unchanged
    assert run.flush() is True and run.pending_records() == []
    assert _steps(tracking.uri, run.run_id) == [1, 2, 3, 4]  # no epoch twice
    assert _steps(tracking.uri, run.run_id, "lr") == [1, 2, 3, 4]


def test_the_end_of_a_trial_waits_for_the_tracking_store_then_fails_clearly(tracking):
    clock = FakeClock()
    run = TrialRun.open(tracking, {"seed": "0"})
    flaky = run.client = Flaky(run.client)
    run.backoff = Backoff(patience=300, sleep=clock.sleep, clock=clock)
    run.log_epoch(1, {"val_uf1": 0.1})
    flaky.down = True
    attempts = {"n": 0}

    def sleep(s):  # the server comes back after a few waits
        clock.sleep(s)
        attempts["n"] += 1
        flaky.down = attempts["n"] < 4

    run.backoff._sleep = sleep
    run.finish({"test_uf1": 0.9}, {"confusion_test.json": "{}"})
    r = MlflowClient(tracking.uri).get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.data.metrics["test_uf1"] == 0.9 and attempts["n"] >= 4
    assert _steps(tracking.uri, run.run_id) == [1]

    other = TrialRun.open(tracking.__class__(**{**tracking.__dict__, "trial_key": "k2"}), {"seed": "1"})
    other.client = Flaky(other.client)
    other.client.down = True
    other.backoff = Backoff(patience=60, sleep=clock.sleep, clock=clock)
    with pytest.raises(TrackingUnavailable, match="logging 1 metrics: the tracking store did not answer"):
        other.finish({"test_uf1": 0.1}, {})


def test_a_create_whose_response_was_lost_makes_no_second_run(tracking):
    client = Flaky(MlflowClient(tracking.uri))
    client.lost["create_run"] = 1
    run = TrialRun.open(tracking, {"seed": "0"}, client=client, backoff=Backoff(sleep=lambda s: None))
    runs = MlflowClient(tracking.uri).search_runs([tracking.experiment_id])
    assert [r.info.run_id for r in runs] == [run.run_id] and runs[0].data.params == {"seed": "0"}

    # a request retried below us (MLflow's HTTP retries re-send a POST whose answer was lost)
    # made two: the copy is deleted
    real = MlflowClient(tracking.uri)

    class Twice(Flaky):
        def create_run(self, *a, **kw):
            real.create_run(*a, **kw)
            return real.create_run(*a, **kw)

    cfg2 = tracking.__class__(**{**tracking.__dict__, "trial_key": "k2", "run_name": "two"})
    run2 = TrialRun.open(cfg2, {"seed": "1"}, client=Twice(real))
    active = [r for r in real.search_runs([tracking.experiment_id]) if r.info.run_name == "two"]
    assert [r.info.run_id for r in active] == [run2.run_id]
    assert active[0].data.tags[OPEN_ID_TAG]


def test_metrics_a_checkpoint_kept_are_delivered_by_the_resumed_trial(tracking):
    run = TrialRun.open(tracking, {"seed": "0"})
    run.unbuffered = True
    run.log_epoch(1, {"val_uf1": 0.1})
    run.client = flaky = Flaky(run.client)
    flaky.lost["log_batch"] = 1  # epoch 2 lands, its response lost; then the server goes down
    run.log_epoch(2, {"val_uf1": 0.2})
    flaky.down = True
    run.log_epoch(3, {"val_uf1": 0.3})
    kept = run.pending_records()  # what the trainable writes into its checkpoint
    assert [r[3] for r in kept] == [2, 3]
    # the trial dies; its retry opens the same run and restores the checkpoint's records
    again = TrialRun.open(tracking, {"seed": "0"})
    assert again.run_id == run.run_id and again.logged_epochs == 2
    again.restore_pending(kept)
    assert again.logged_epochs == 3
    again.log_epoch(3, {"val_uf1": 0.3})  # re-trained after the checkpoint: not buffered twice
    again.log_epoch(4, {"val_uf1": 0.4})
    again.finish({"test_uf1": 0.5}, {})
    assert _steps(tracking.uri, run.run_id) == [1, 2, 3, 4]


def test_creates_that_keep_failing_give_up_although_the_searches_answer(tracking):
    """A store that answers searches but fails every create (a broken database behind a live
    server) must not keep a trial waiting for ever: the creates have their own patience."""
    clock = FakeClock()
    real = MlflowClient(tracking.uri)

    class CreatesFail(Flaky):
        def create_run(self, *a, **kw):
            raise RestException({"error_code": "INTERNAL_ERROR", "message": "database is broken"})

    cfg = tracking.__class__(**{**tracking.__dict__, "trial_key": "k3", "run_name": "three"})
    with pytest.raises(TrackingUnavailable, match="creating the trial's run: the tracking store did not answer"):
        TrialRun.open(cfg, {"seed": "0"}, client=CreatesFail(real),
                      backoff=Backoff(patience=60, sleep=clock.sleep, clock=clock))
    assert 60 - 2 * MAX_WAIT_S < clock.now <= 60


def test_a_trial_stopped_from_outside_during_an_outage_delivers_its_epochs_then_ends_killed(tracking):
    cfg = tracking.__class__(**{**tracking.__dict__, "trial_key": "k4", "run_name": "four"})
    run = TrialRun.open(cfg, {"seed": "0"})

    class BackAfterTwo(Flaky):  # down for the first two requests (about 1.5 s of backoff), then back
        n = 0

        def __getattr__(self, name):
            call = super().__getattr__(name)

            def counted(*a, **kw):
                BackAfterTwo.n += 1
                self.down = BackAfterTwo.n <= 2
                return call(*a, **kw)
            return counted

    run.client = BackAfterTwo(run.client)
    run.log_epoch(1, {"val_uf1": 0.1})
    run.log_epoch(2, {"val_uf1": 0.2})  # buffered
    run.stopped()
    r = MlflowClient(cfg.uri).get_run(run.run_id)
    assert r.info.status == "KILLED" and _steps(cfg.uri, run.run_id) == [1, 2]
