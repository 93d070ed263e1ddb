"""Configure the tour's ingest relay: `pyinfra inventories/relay.py deploys/relay.py`.

The same relay role the local cloud renders; host data carries the tour (``nomadkit_tour``).
"""

from nomadkit.roles import relay

relay.install()
relay.activate(relay.configure())
