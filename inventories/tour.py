"""pyinfra inventory of a tour: `pyinfra inventories/tour.py deploys/kit.py`.

One host per kit (host data: the kit's tour model), one group per stop. Pick the tour with
NOMADKIT_TOUR=tours/summer.yaml (default: tours/demo.yaml); see nomadkit.inventory.
"""

from nomadkit.inventory import from_environment

globals().update(from_environment())
