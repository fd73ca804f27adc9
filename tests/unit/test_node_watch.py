"""Noticing a lost cluster and deciding what to do about it, on made-up observations (no Ray)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.runtime.node_watch import (DEPLOYMENT, PIPELINE, GiveUp, NodeLoss, NodeWatch, NodeWatchOptions, Recovery,
                                      Restart, in_flight_ingest)

pytestmark = pytest.mark.unit


def test_an_exited_process_of_the_embedded_cluster_is_lost_at_once() -> None:
    watch = NodeWatch(NodeWatchOptions(), embedded=True)
    assert watch.observe(0.0, exited={"gcs_server": False, "raylet": False}) is None
    loss = watch.observe(0.5, exited={"gcs_server": False, "raylet": True})
    assert loss == NodeLoss(("raylet",), died=True, embedded=True)
    assert loss.what() == "raylet died"
    assert loss.cluster() == "embedded Ray cluster"
    # a lost cluster stays lost, whatever is seen later
    assert watch.observe(1.0, exited={"gcs_server": False, "raylet": False}) is loss


def test_both_processes_gone_are_named_gcs_first() -> None:
    watch = NodeWatch(NodeWatchOptions(), embedded=True)
    loss = watch.observe(0.0, exited={"raylet": True, "gcs_server": True})
    assert loss is not None and loss.what() == "GCS server and raylet died"


def test_an_external_component_is_lost_only_after_refusing_for_the_whole_grace() -> None:
    watch = NodeWatch(NodeWatchOptions(unreachable_after_s=3.0), embedded=False, address="10.0.0.5:6379")
    assert watch.observe(0.0, answers={"gcs_server": True, "raylet": False}) is None
    assert watch.observe(2.0, answers={"gcs_server": True, "raylet": True}) is None  # answered again: reset
    assert watch.observe(2.5, answers={"gcs_server": True, "raylet": False}) is None
    assert watch.observe(5.0, answers={"gcs_server": True, "raylet": False}) is None  # 2.5 s silent
    loss = watch.observe(5.6, answers={"gcs_server": True, "raylet": False})
    assert loss is not None and loss.lost == ("raylet",) and not loss.died
    assert loss.what() == "raylet stopped answering for 3.1s"
    assert loss.cluster() == "Ray cluster at 10.0.0.5:6379"


@given(st.lists(st.tuples(st.floats(0.0, 2.0), st.booleans(), st.booleans()), max_size=30),
       st.floats(0.1, 5.0))
def test_no_loss_without_a_full_grace_of_silence(rounds: list[tuple[float, bool, bool]], grace: float) -> None:
    """Oracle: a component is lost when some unbroken run of its refusals spans >= grace."""
    watch = NodeWatch(NodeWatchOptions(unreachable_after_s=grace), embedded=False, address="h:1")
    now, silent_since = 0.0, {"gcs_server": None, "raylet": None}
    expected = None
    for step, gcs, raylet in rounds:
        now += step
        seen = {"gcs_server": gcs, "raylet": raylet}
        for name, answering in seen.items():
            silent_since[name] = None if answering else (silent_since[name] if silent_since[name] is not None else now)
        lost = sorted(n for n, since in silent_since.items() if since is not None and now - since >= grace)
        loss = watch.observe(now, answers=seen)
        if expected is None and lost:
            expected = tuple(lost)
        assert (loss.lost if loss else None) == expected


def test_the_embedded_cluster_is_restarted_a_limited_number_of_times() -> None:
    recovery = Recovery("wordcount", NodeWatchOptions(max_restarts=2))
    loss = NodeLoss(("raylet",), died=True, embedded=True)
    assert recovery.decide(loss) == Restart(1)
    assert recovery.resumed_line(loss, from_snapshot=True) == (
        "embedded Ray cluster lost (raylet died); restarted it and resumed job wordcount from its snapshot")
    assert "ran job wordcount again from the start" in recovery.resumed_line(loss, from_snapshot=False)
    assert recovery.decide(loss) == Restart(2)
    third = recovery.decide(loss)
    assert isinstance(third, GiveUp)
    assert "again after 2 restart(s)" in third.message and "resume=True" in third.message
    assert "\n" not in third.message


def test_an_external_cluster_is_never_restarted() -> None:
    loss = NodeLoss(("gcs_server",), died=False, embedded=False, address="ray-head:6379", after_s=3.2)
    decision = Recovery("adtech").decide(loss)
    assert decision == GiveUp("Ray cluster at ray-head:6379 lost (GCS server stopped answering for 3.2s); job adtech "
                              "stopped; once the cluster is back, rerun it with engine.run(job, resume=True) to "
                              "continue from its snapshots")


def test_a_pipeline_is_worded_as_one_and_resumes_from_its_sink() -> None:
    recovery = Recovery("double->odd", NodeWatchOptions(max_restarts=1), wording=PIPELINE)
    loss = NodeLoss(("gcs_server",), died=True, embedded=True)
    assert recovery.decide(loss) == Restart(1)
    assert recovery.resumed_line(loss, from_snapshot=True) == (
        "embedded Ray cluster lost (GCS server died); restarted it and resumed pipeline double->odd from its last "
        "committed sink batch")
    assert recovery.resumed_line(loss, from_snapshot=False).endswith(
        "ran pipeline double->odd again from the start (no sink batch committed yet)")
    again = recovery.decide(loss)
    assert isinstance(again, GiveUp) and "pipeline double->odd stopped" in again.message
    external = Recovery("p", wording=PIPELINE).decide(NodeLoss(("raylet",), died=True, embedded=False, address="h:1"))
    assert external == GiveUp("Ray cluster at h:1 lost (raylet died); pipeline p stopped; once the cluster is back, "
                              "rerun it with engine.run(pipeline, resume=True) to continue from its last committed "
                              "sink batch")


def test_a_run_that_cannot_resume_is_never_restarted_and_says_why() -> None:
    recovery = Recovery("p", wording=PIPELINE)
    loss = NodeLoss(("raylet",), died=True, embedded=True)
    decision = recovery.decide(loss, blocker="its sink keeps no commits")
    assert decision == GiveUp("embedded Ray cluster lost (raylet died); pipeline p stopped and cannot continue where "
                              "it stopped: its sink keeps no commits")
    assert recovery.restarts == 0  # a refusal spends no restart
    assert recovery.decide(loss) == Restart(1)


def test_a_deployment_is_reopened_from_its_directory() -> None:
    recovery = Recovery("/data/adtech", wording=DEPLOYMENT)
    loss = NodeLoss(("gcs_server",), died=True, embedded=True)
    assert recovery.decide(loss) == Restart(1)
    assert recovery.resumed_line(loss, from_snapshot=True) == (
        "embedded Ray cluster lost (GCS server died); restarted it and reopened deployment /data/adtech from its "
        "directory (every acknowledged event kept, views rebuilt)")
    external = Recovery("/d", wording=DEPLOYMENT).decide(NodeLoss(("gcs_server",), died=False, embedded=False,
                                                                  address="h:1", after_s=2.0))
    assert isinstance(external, GiveUp)
    assert external.message == ("Ray cluster at h:1 lost (GCS server stopped answering for 2.0s); deployment /d "
                                "stopped; once the cluster is back, reopen its directory with engine.run(architecture, "
                                "\"ray\"): every acknowledged event is in its log")


def test_an_ingest_in_flight_says_whether_it_was_acknowledged() -> None:
    assert in_flight_ingest(None) == ("this ingest was not stored and is not acknowledged: send it again once the "
                                      "deployment is reopened")
    assert in_flight_ingest((10, 14)) == ("this ingest's events were stored in the log at offsets [10, 14) before the "
                                          "loss and are acknowledged: do not send them again")
    assert "nothing to send again" in in_flight_ingest((7, 7))


@pytest.mark.parametrize("bad", [dict(check_every_s=0), dict(unreachable_after_s=-1.0),
                                 dict(check_every_s=float("nan")), dict(max_restarts=-1), dict(max_restarts=1.5),
                                 dict(check_every_s=True)])
def test_bad_options_are_refused_with_their_name(bad: dict) -> None:
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"NodeWatchOptions.{name}"):
        NodeWatchOptions(**bad)
