"""cache: nginx serving preview assets on the venue LAN, primed from the tour's asset manifest.

Primed files (URL = CDN + path) are checked against the manifest's sha256 before they are
served; a partial download resumes; anything not primed goes through nginx's `proxy_cache`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, deploy, operation
from pyinfra.operations.files import directory, link

from nomadkit.endpoints import CloudEndpoints
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, Puts, apply, changed, packages_present, put_all, service
from nomadkit.tour import CacheAsset, Kit, Tour

PACKAGES = ("nginx", "curl")

STORE = "/var/lib/nomadkit/cache"
SITE = "/etc/nginx/conf.d/nomadkit-cache.conf"
MANIFEST = "/etc/nomadkit/cache-manifest.tsv"
PRIME = "/usr/local/lib/nomadkit/cache-prime"
PRIME_UNIT = "/etc/systemd/system/nomadkit-cache-prime.service"


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """The nginx site, the manifest, and (once the CDN is known) the primer and its unit."""
    cdn = endpoints.cdn_url.rstrip("/") if endpoints else None
    out = {
        SITE: render("cache/nginx.conf.j2", kit=kit, store=STORE, cdn=cdn,
                     cdn_host=urlsplit(cdn).netloc if cdn else None),
        MANIFEST: render("cache/manifest.tsv.j2", kit=kit),
    }
    if cdn:
        out[PRIME] = render("cache/cache-prime.sh.j2", kit=kit, store=STORE, cdn=cdn, manifest=MANIFEST)
        out[PRIME_UNIT] = render("cache/cache-prime.service.j2", script=PRIME)
    return out


class StoreChecksums(FactBase):
    """sha256 of each given file under the cache store (missing files are left out)."""

    default = dict

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(f"'{p}'" for p in paths)
        return f"cd {STORE} 2>/dev/null && sha256sum -- {quoted} 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, str]:
        return {line[66:]: line[:64] for line in output if len(line) > 66}


@operation()
def primed(assets: list[CacheAsset], script: str):
    """
    Every manifest asset in the store with the manifest's checksum; runs the primer otherwise.

    + assets: the kit's cache manifest (path, sha256)
    + script: the primer on the kit (resumes partial downloads, verifies before serving)
    """
    have = host.get_fact(StoreChecksums, paths=tuple(a.path for a in assets))
    if any(have.get(a.path) != a.sha256 for a in assets):
        yield StringCommand(script)
    else:
        host.noop(f"all {len(assets)} cache assets primed and verified")


@deploy("cache: install")
def install() -> None:
    packages_present(name="cache packages", packages=PACKAGES)
    directory(name="Cache store", path=STORE, mode="755")
    directory(name="nginx proxy_cache (nginx makes only the last level itself)",
              path="/var/cache/nginx/nomadkit", mode="700", user="www-data", group="www-data")


@deploy("cache: configure")
def configure() -> Puts:
    tour, kit, endpoints = kit_context(host.data)
    ops = put_all(files(tour, kit, endpoints),
                  lambda path: Perm(mode="755") if path == PRIME else Perm())
    ops["default-site"] = link(name="nginx: no Debian default site (the cache is the default server)",
                               path="/etc/nginx/sites-enabled/default", present=False)
    return ops


@deploy("cache: activate")
def activate(ops: Puts) -> None:
    """nginx reloaded on changes; assets primed (only when the cloud is known)."""
    _, kit, endpoints = kit_context(host.data)
    service("nginx", changed(ops, SITE, "default-site"), reload=True)
    if endpoints is None:
        host.noop("cache: no cloud endpoints yet, assets not primed (run `nomadkit cloud up`)")
        return
    apply("systemd: units reloaded (cache primer)", "units-cache", changed(ops, PRIME_UNIT),
          ["systemctl daemon-reload"])
    # The primer also runs at boot, for assets the deploy could not fetch.
    service("nomadkit-cache-prime", None, running=None)
    if kit.cache:
        primed(name=f"Cache primed: {len(kit.cache)} assets verified by sha256", assets=kit.cache,
               script=PRIME)
