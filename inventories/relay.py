"""pyinfra inventory of a tour's ingest relay, from the tour file and the stack's endpoints.

    NOMADKIT_TOUR=tours/demo.yaml NOMADKIT_RELAY=ec2-....compute.amazonaws.com \
        pyinfra inventories/relay.py deploys/relay.py

NOMADKIT_RELAY is the relay's public DNS name (``pulumi stack output endpoints``:
the host of ``relay_srt_urls``); SSH as ``admin`` (Debian's AMI user) with the stack's key.
"""

import os

from nomadkit.tour import load_tour

_tour = load_tour(os.environ["NOMADKIT_TOUR"])

relay = [(os.environ["NOMADKIT_RELAY"], {
    "ssh_user": os.environ.get("NOMADKIT_RELAY_USER", "admin"),
    "_sudo": True,
    "nomadkit_tour": _tour.model_dump(mode="json"),
})]
