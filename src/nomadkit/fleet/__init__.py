"""Fleet operations: Ansible interop, signed pull-mode bundles, drift and rolling deploys."""
