"""nomadkit-agent: the daemon on every kit that keeps the event online when the network is not.

It runs with Debian's python3 and only the standard library plus python3-boto3 and
python3-cryptography: no pydantic on the kit. Everything it needs arrives in one JSON file,
/etc/nomadkit/agent.json, rendered by the `agent` role from the Tour model (see `config`).
"""
