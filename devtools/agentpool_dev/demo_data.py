"""Fixed tenants, documents, users and prompts of `agentpool demo`.

A test checks that these prompts produce exact, hand-computed totals, so changing any text
here changes those totals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    name: str
    tier: str
    documents: dict[str, str]
    users: tuple[str, ...]


@dataclass(frozen=True)
class DemoRequest:
    user: str
    prompt: str


TENANTS = (
    DemoTenant(
        tenant_id="harbor-clinic",
        name="Harbor Family Clinic",
        tier="basic",
        documents={
            "flu-vaccine.md": (
                "Flu vaccine clinic hours: Tuesday and Thursday 9:00 to 12:00. "
                "Adults over 65 receive the high-dose vaccine. No appointment is needed."
            ),
            "opening-hours.md": "The clinic is open Monday to Friday from 8:00 to 18:00.",
        },
        users=("ana@harbor.example", "ben@harbor.example"),
    ),
    DemoTenant(
        tenant_id="meadow-clinic",
        name="Meadow Pediatrics",
        tier="basic",
        documents={
            "allergy-policy.md": (
                "Allergy policy: children with a peanut allergy must bring an epinephrine "
                "auto-injector to every visit."
            ),
        },
        users=("carla@meadow.example",),
    ),
    DemoTenant(
        tenant_id="st-anne-hospital",
        name="St Anne University Hospital",
        tier="premium",
        documents={
            "triage-protocol.md": (
                "Emergency triage protocol: chest pain patients are seen within 10 minutes "
                "and receive an ECG on arrival."
            ),
        },
        users=("dr.diaz@stanne.example", "nurse.eve@stanne.example"),
    ),
)

REQUESTS = (
    DemoRequest("ana@harbor.example", "When can adults get the flu vaccine?"),
    DemoRequest("ben@harbor.example", "What are the clinic opening hours?"),
    DemoRequest("ana@harbor.example", "Is an appointment needed for the flu vaccine?"),
    DemoRequest("carla@meadow.example", "What does the allergy policy say about peanuts?"),
    DemoRequest("dr.diaz@stanne.example", "How fast are chest pain patients seen?"),
    DemoRequest("nurse.eve@stanne.example", "Find recent guidance on triage for chest pain."),
)
