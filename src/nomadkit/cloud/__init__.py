"""The tour's cloud: the Pulumi program captured as a plan, and that plan realized locally."""
