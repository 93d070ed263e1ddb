"""Components of a tour's cloud: each groups the resources that belong together.

``__main__.py`` reads as the list of what a tour has; the detail lives here, one module per
component, each a ``pulumi.ComponentResource`` with typed args and its children parented to it.
"""
