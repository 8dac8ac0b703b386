"""Create or update the automation that marks a flow run Crashed when its heartbeats stop (Prefect's zombie detection).

Flow runs send a `prefect.flow-run.heartbeat` event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds; a run whose
process died (its worker killed with -9, the machine lost, the server down while it ran) sends none, and this
proactive trigger changes its state to Crashed after MISSED_BEATS heartbeats' time. Run against the server named
by PREFECT_API_URL: `python deployments/crash_detection.py`.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import get_current_settings

NAME = "domain-embed: crash flow runs whose heartbeats stopped"
MISSED_BEATS = 4
TAG = "domain-embed"
TERMINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def crash_detection(heartbeat_s: int) -> Automation:
    """After a heartbeat, expect another (or a terminal state) within MISSED_BEATS heartbeats, else mark the run Crashed."""
    within = MISSED_BEATS * heartbeat_s
    return Automation(
        name=NAME,
        description=f"A flow run that sent no heartbeat for {within} s (its process is gone) is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in TERMINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            # only runs of the deployments of prefect.yaml (tagged domain-embed), which `up`'s workers run with its heartbeat
            # frequency: an in-process `domain-embed run` against the server beats at Prefect's default (180 s)
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within} s: the flow run's process died "
                "(its worker killed, the machine lost or the server down); re-run it to resume from the run store",
            )
        ],
    )


def ensure_crash_detection() -> str:
    """Replace the automation of this name with one for the current heartbeat frequency; returns its id."""
    heartbeat_s = get_current_settings().flows.heartbeat_frequency
    if heartbeat_s is None:
        raise SystemExit("PREFECT_FLOWS_HEARTBEAT_FREQUENCY is off: without heartbeats no crashed run can be detected")
    try:
        Automation.read(name=NAME).delete()
    except ValueError:
        pass
    return str(crash_detection(heartbeat_s).create().id)


if __name__ == "__main__":
    print("crash detection automation:", ensure_crash_detection())
