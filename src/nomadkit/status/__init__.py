"""`nomadkit status`: every kit of a tour at a glance, read from each agent's status file."""
