"""CDN edge failover figures (measured by bench/bench_cloud.py, which brings the cloud up once)."""

from bench.bench_cloud import TITLE_CDN as TITLE
from bench.bench_cloud import run_cdn as run

__all__ = ["TITLE", "run"]
