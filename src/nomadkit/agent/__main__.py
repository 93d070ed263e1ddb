"""`python3 -m nomadkit.agent [--config FILE]`: how systemd starts nomadkit-agent."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from nomadkit.agent import config
from nomadkit.agent.daemon import Agent


def main() -> None:
    parser = argparse.ArgumentParser(prog="nomadkit-agent", description=(
        "Keep the kit online: uplink probing and failover, encoder rollback, recording uploads, "
        "door check-in, status and heartbeats."))
    parser.add_argument("--config", type=Path, default=config.DEFAULT_PATH,
                        help=f"agent settings (default {config.DEFAULT_PATH})")
    parser.add_argument("--verbose", action="store_true", help="log HTTP requests too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stdout,
                        format="%(name)s %(levelname)s %(message)s")
    agent = Agent(config.load(args.config))
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    agent.run()


if __name__ == "__main__":
    main()
