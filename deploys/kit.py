"""Configure every kit of a tour: `pyinfra inventories/tour.py deploys/kit.py`.

Runs each role (base, uplinks, firewall, cache, encoder, power, agent, pull) in order: install,
configure, activate. `nomadkit deploy` runs the same function with a progress display.
"""

from nomadkit.deploy.kit import configure_kit

configure_kit()
