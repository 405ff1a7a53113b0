"""``python -m localcluster build|up|down|status|env [--state DIR]``, ``stop|start NAME``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localcluster import dataplane
from localcluster.build import BuildError, ensure_binaries
from localcluster.cluster import ClusterError, LocalCluster
from localcluster.paths import cache_dir, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="Build and run a local Kubernetes control plane (etcd, kube-apiserver, "
        "controller-manager, scheduler, kwok nodes) with Prometheus and a traffic simulator.",
    )
    parser.add_argument("command", choices=["build", "up", "down", "status", "env", "stop", "start"])
    parser.add_argument(
        "component", nargs="?", help="with stop and start: one component (prometheus, serin, simulator, ...)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=default_state_dir(),
        help="folder for this cluster's certificates, data, logs and kubeconfig (default: %(default)s)",
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="with up: start only the control plane, without Prometheus, the traffic simulator and the "
        "external metrics API that HorizontalPodAutoscalers read",
    )
    parser.add_argument(
        "--serin",
        action="store_true",
        help="with up: also run the Serin server (TLS, webhooks registered, CRDs and RBAC installed)",
    )
    parser.add_argument(
        "--traefik",
        action="store_true",
        help="with up: also run the real data plane (Traefik and the pods' servers) for namespaces labelled "
        "localcluster.serin.dev/data-plane=traefik",
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.state.resolve())

    try:
        if args.command == "build":
            binaries = ensure_binaries()
            # On stderr: `eval "$(make -s up)"` must see only the export lines.
            print(f"binaries are in {cache_dir() / 'bin'}", file=sys.stderr)
            for name, path in vars(binaries).items():
                print(f"  {name}: {path}", file=sys.stderr)
        elif args.command == "up":
            state = cluster.up(with_extras=not args.no_extras or args.serin or args.traefik, with_serin=args.serin)
            if args.traefik:
                dataplane.ensure_dataplane(cluster, ensure_binaries(), state)
            print("\n".join(cluster.env_lines()))
        elif args.command == "down":
            stopped = cluster.down()
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}", file=sys.stderr)
        elif args.command == "status":
            status = cluster.status()
            if not status:
                print("nothing is running")
                return 1
            for name, alive in status.items():
                print(f"{name:24} {'running' if alive else 'stopped'}")
            return 0 if all(status.values()) else 1
        elif args.command == "env":
            print("\n".join(cluster.env_lines()))
        elif args.command in ("stop", "start"):
            if not args.component:
                parser.error(f"{args.command} needs the name of a component (see `status`)")
            if args.command == "stop":
                if not cluster.stop(args.component):
                    print(f"{args.component} was not running", file=sys.stderr)
            else:
                cluster.start(args.component)
    except (BuildError, ClusterError, KeyError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
