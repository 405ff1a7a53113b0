"""``serin``: a command line for people who run releases (also ``kubectl serin``, as a plugin).

Reading and intervening go through the API server with the caller's own kubeconfig, so the API
server authorizes and audits every action and no Serin endpoint needs to be reachable:

* ``status [NS/NAME]``: the Canaries as a table (``kubectl get canaries`` with the last metrics),
  or one of them in detail with its checks and Events;
* ``promote``, ``abort``, ``retry``: a request written on the Canary (the ``serin.dev/request``
  annotation), acted on and removed by the next tick;
* ``pause``, ``resume``: ``spec.suspend``;
* ``wait NS/NAME``: until the release of the current revision is over, a line per step, for CI;
* ``migrate``: Flagger's Canaries become Serin's, adopting what Flagger made (``serin.migrate``).

``tick``, ``plan`` (the dry-run tick) and ``replay`` ask the Serin server (``--server`` or
``SERIN_URL``) with a bearer token issued for Serin (``--token`` or ``SERIN_TOKEN``; for example
from ``kubectl create token ACCOUNT --audience serin``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import requests
from kubernetes import config

from serin.groups import releases
from serin.kube.store import KubeError, KubeStore, NotFound
from serin.migrate import FLAGGER_API_VERSION, Migration, MigrationRefused
from serin.model import REQUEST_ANNOTATION, ManualRequest
from serin.status import CanaryStatus, MetricCheck
from serin.timeline import age, event_time
from serin.waiting import EXIT_FAILED, EXIT_TIMED_OUT, Clock, WaitRefused, duration, positive_duration, wait_for

# What the answers of the Serin server may take, at most (a replay of a long window is slow).
SERVER_TIMEOUT_SECONDS = 120.0
# Events listed in the detail of one Canary: the latest ones.
EVENTS_SHOWN = 10

REQUEST_WORDS: Mapping[ManualRequest, str] = {
    ManualRequest.PROMOTE: "promotion",
    ManualRequest.ABORT: "rollback",
    ManualRequest.RETRY: "new analysis",
}

# Exit statuses (``serin.waiting``'s, and a usage error). argparse's own 2 for a wrong command line
# is taken by ``wait``'s timeout: a CI step that reacts to a timeout (say, with ``serin abort``)
# must not react to a typo the same way.
EXIT_USAGE = 64  # EX_USAGE of sysexits.h
EXIT_STATUS_HELP = f"""exit status:
  0   done (wait: the release succeeded, or the first revision is in place)
  {EXIT_FAILED}   an error, said on stderr (wait: also a release that failed and was rolled back)
  {EXIT_TIMED_OUT}   wait: timed out, the release is not over
  {EXIT_USAGE}  the command line is wrong (a usage error)"""
WAIT_EXIT_STATUS_HELP = f"""exit status:
  0   the release succeeded, or the first revision is in place
  {EXIT_FAILED}   the release failed and was rolled back; or an error, said on stderr
  {EXIT_TIMED_OUT}   timed out: the release is not over (the last line says where it is)
  {EXIT_USAGE}  the command line is wrong (a usage error)"""


class CliError(Exception):
    """A problem the user can act on: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Target:
    namespace: str | None  # None: every namespace (``status -A``)
    name: str | None  # None: every Canary of the namespace


# ---- output, pure --------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned and three spaces apart, as kubectl prints them."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def check_summary(check: MetricCheck) -> str:
    value = "-" if check.value is None else f"{check.value:.4g}"
    result = "unavailable" if check.passed is None else "ok" if check.passed else "failed"
    return f"{check.name}={value} {result}"


def status_rows(canaries: Sequence[Mapping[str, Any]], now: datetime.datetime) -> list[list[str]]:
    """One row per Canary; a release group as one row, its members indented under it."""
    rows = [["NAMESPACE", "NAME", "STATUS", "WEIGHT", "FAILED", "LAST TRANSITION", "REQUEST", "METRICS"]]
    for release in releases(canaries):
        if release.group:
            phase = release.phase
            members = len(release.members)
            rows.append(
                [
                    release.namespace,
                    f"{release.name} (group of {members})",
                    phase.value if phase else "-",
                    *["-"] * 5,
                ]
            )
        rows.extend(canary_row(canary, now, indent="  " if release.group else "") for canary in release.members)
    return rows


def canary_row(canary: Mapping[str, Any], now: datetime.datetime, indent: str = "") -> list[str]:
    metadata = canary["metadata"]
    status = CanaryStatus.from_dict(canary.get("status"))
    suspended = " (suspended)" if (canary.get("spec") or {}).get("suspend") else ""
    return [
        metadata.get("namespace", ""),
        indent + metadata["name"],
        (status.phase.value if status.phase else "-") + suspended,
        str(status.canary_weight),
        str(status.failed_checks),
        age(status.last_transition_time, now),
        (metadata.get("annotations") or {}).get(REQUEST_ANNOTATION, "-"),
        ", ".join(map(check_summary, status.checks)) or "-",
    ]


def describe(canary: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime.datetime) -> str:
    """One Canary in detail: where it is, why, and what happened lately."""
    metadata, spec = canary["metadata"], canary.get("spec") or {}
    status = CanaryStatus.from_dict(canary.get("status"))
    analysis = spec.get("analysis") or {}
    target = spec.get("targetRef") or {}
    lines = [
        f"Canary:           {metadata.get('namespace')}/{metadata['name']}",
        f"Target:           {target.get('kind', '?')}/{target.get('name', '?')}",
        f"Phase:            {status.phase.value if status.phase else '-'}"
        + (" (suspended: spec.suspend is true)" if spec.get("suspend") else ""),
        f"Canary weight:    {status.canary_weight}%",
        f"Iterations:       {status.iterations}",
        f"Failed checks:    {status.failed_checks} of {analysis.get('threshold', '?')}",
        f"Last transition:  {age(status.last_transition_time, now)} ago",
        f"Revision:         {status.last_applied_spec or '-'} (promoted: {status.last_promoted_spec or '-'})",
    ]
    if status.condition is not None:
        lines.append(f"Condition:        Promoted={status.condition.status} {status.condition.reason}: ")
        lines[-1] += status.condition.message
    group = spec.get("group")
    if group:
        progress = status.group
        where = f"step {progress.steps}" + (", analysis passed" if progress.analysed else "") if progress else "-"
        lines.append(f"Group:            {group} ({where})")
        if progress is not None and progress.message:
            lines.append(f"  others:         {progress.message}")
    request = (metadata.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if request:
        lines.append(f"Request:          {request} (waiting for the next tick)")
    lines.append("Checks:" if status.checks else "Checks:           none yet")
    lines += [f"  {check_summary(check)}: {check.message}" for check in status.checks]
    lines.append("Events:" if events else "Events:           none")
    rows = [["  AGE", "TYPE", "MESSAGE"]]
    for event in events[-EVENTS_SHOWN:]:
        rows.append([f"  {age(event_time(event), now)}", str(event.get("type", "")), str(event.get("message", ""))])
    if events:
        lines.append(table(rows))
    return "\n".join(lines)


def tick_rows(reports: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = [["NAMESPACE", "NAME", "PHASE", "WEIGHT", "SUMMARY"]]
    for report in reports:
        summary = f"error: {report['error']}" if report.get("error") else str(report.get("summary", ""))
        rows.append(
            [
                str(report.get("namespace", "")),
                str(report.get("name", "")),
                str(report.get("phase") or "-"),
                str(report.get("weight", 0)),
                summary,
            ]
        )
    return rows


def tick_text(answer: Mapping[str, Any]) -> str:
    reports = answer.get("canaries") or []
    if not reports:
        return "no canary"
    lines = [table(tick_rows(reports))]
    for report in reports:
        details = [f"  event: {event}" for event in report.get("events") or []]
        details += [f"  metric: {metric.get('message', '')}" for metric in report.get("metrics") or []]
        details += [f"  action: {action}" for action in report.get("actions") or []]
        if details:
            lines.append(f"{report.get('namespace')}/{report.get('name')}:")
            lines += details
    return "\n".join(lines)


def replay_text(answer: Mapping[str, Any]) -> str:
    rows = [["TIME", "PHASE", "WEIGHT", "FAILED", "SUMMARY"]]
    for step in answer.get("steps") or []:
        rows.append(
            [
                str(step.get("time", "")),
                str(step.get("phase") or "-"),
                str(step.get("weight", 0)),
                str(step.get("failedChecks", 0)),
                str(step.get("summary", "")),
            ]
        )
    modified = " with the modified spec" if answer.get("modified") else ""
    head = f"replay of {answer.get('canary')}{modified} from {answer.get('from')} to {answer.get('to')}"
    return "\n".join([head, table(rows), f"outcome: {answer.get('outcome')} (phase {answer.get('phase') or '-'})"])


# ---- the commands --------------------------------------------------------------------------


def parse_target(text: str | None, namespace: str | None, everywhere: bool = False) -> Target:
    """``NS/NAME``, ``NAME`` (in ``namespace``) or nothing (every Canary there, or everywhere)."""
    if everywhere:
        return Target(None, None)
    if not text:
        return Target(namespace, None)
    if text.count("/") > 1 or text.startswith("/") or text.endswith("/"):
        raise CliError(f"name a Canary as NAME or NAMESPACE/NAME, not {text!r}")
    if "/" in text:
        ns, name = text.split("/")
        return Target(ns, name)
    return Target(namespace, text)


def one(target: Target, command: str) -> tuple[str, str]:
    if target.namespace is None or target.name is None:
        raise CliError(f"{command} needs a Canary: serin {command} NAMESPACE/NAME")
    return target.namespace, target.name


class Cli:
    def __init__(
        self, args: argparse.Namespace, out: TextIO, store: KubeStore | None = None, clock: Clock | None = None
    ) -> None:
        self.args = args
        self.out = out
        # Given: tests' fakes (the kubeconfig is then not read, the namespace is "default").
        self._store = store
        self.clock = clock or Clock()
        self.default_namespace = "default"

    @property
    def store(self) -> KubeStore:
        """The caller's own access to the API server, from their kubeconfig."""
        if self._store is None:
            self._connect()
            assert self._store is not None
        return self._store

    def _connect(self) -> None:
        """The kubeconfig's client, and its context's namespace (the default one)."""
        kubeconfig, context = self.args.kubeconfig, self.args.context
        try:
            contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = next((c for c in contexts if c["name"] == context), current) if context else current
            api = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError, TypeError) as error:
            raise CliError(f"cannot load the kubeconfig: {error}") from None
        self.default_namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        self._store = KubeStore(api)

    def target(self) -> Target:
        if self._store is None:
            self._connect()
        namespace = self.args.namespace or self.default_namespace
        return parse_target(getattr(self.args, "canary", None), namespace, getattr(self.args, "all_namespaces", False))

    def canary(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.store.get_canary(namespace, name)
        if found is None:
            raise CliError(f"no canary {namespace}/{name}")
        return found

    def print(self, text: str) -> None:
        # Flushed: a CI log shows each line as it comes, not when the buffer fills.
        print(text, file=self.out, flush=True)

    def status(self) -> None:
        target = self.target()
        now = datetime.datetime.now(datetime.UTC)
        if target.name is None:
            canaries = self.store.list_canaries(target.namespace)
            if self.args.output == "json":
                self.print(json.dumps(canaries, indent=2))
            elif not canaries:
                where = f"namespace {target.namespace}" if target.namespace else "any namespace"
                self.print(f"no canary in {where}")
            else:
                self.print(table(status_rows(canaries, now)))
            return
        namespace, name = one(target, "status")
        canary = self.canary(namespace, name)
        if self.args.output == "json":
            self.print(json.dumps(canary, indent=2))
            return
        self.print(describe(canary, self.store.canary_events(namespace, name), now))

    def request(self, request: ManualRequest) -> None:
        namespace, name = one(self.target(), request.value)
        self.canary(namespace, name)
        self.store.patch_canary(namespace, name, {"metadata": {"annotations": {REQUEST_ANNOTATION: request.value}}})
        self.print(
            f"{REQUEST_WORDS[request]} of canary {namespace}/{name} requested: the next tick acts on it "
            f"({REQUEST_ANNOTATION}={request.value})"
        )

    def suspend(self, suspend: bool) -> None:
        namespace, name = one(self.target(), "pause" if suspend else "resume")
        self.canary(namespace, name)
        self.store.patch_canary(namespace, name, {"spec": {"suspend": suspend}})
        done = "paused: no step is taken until it is resumed" if suspend else "resumed"
        self.print(f"canary {namespace}/{name} {done}")

    def migrate(self) -> None:
        target = self.target()
        migration = Migration(self.store, dry_run=self.args.dry_run)
        found = migration.flagger_canaries(target.namespace)
        chosen = [c for c in found if target.name in (None, c["metadata"]["name"])]
        if not chosen:
            where = f"namespace {target.namespace}" if target.namespace else "any namespace"
            what = f"canary {target.name}" if target.name else "canary"
            raise CliError(f"no Flagger {what} ({FLAGGER_API_VERSION}) in {where}")
        refused = []
        for flagger in chosen:
            try:
                outcome = migration.migrate(flagger)
            except MigrationRefused as error:
                refused.append(str(error))
                self.print(f"skipped: {error}")
                continue
            for line in outcome.lines:
                self.print(line)
        if refused:
            raise CliError(f"{len(refused)} of {len(chosen)} canaries not migrated (see above)")

    def wait(self) -> int:
        """Poll the Canary until the release of its current revision is over, or the timeout."""
        namespace, name = one(self.target(), "wait")
        try:
            return wait_for(
                lambda: self.store.get_canary(namespace, name),
                f"{namespace}/{name}",
                self.args.timeout,
                self.args.interval.seconds,
                self.clock,
                self.print,
            )
        except WaitRefused as refused:
            raise CliError(str(refused)) from None

    def server(self, method: str, path: str, query: Mapping[str, str], body: str | None = None) -> dict[str, Any]:
        """An answer of the Serin server, or CliError saying what went wrong."""
        url = self.args.server or os.environ.get("SERIN_URL")
        token = self.args.token or os.environ.get("SERIN_TOKEN")
        if not url:
            raise CliError("say where Serin is: --server https://HOST:PORT or SERIN_URL")
        if not token:
            raise CliError(
                "Serin needs a bearer token: --token TOKEN or SERIN_TOKEN "
                "(e.g. from `kubectl create token ACCOUNT --audience serin`)"
            )
        verify: bool | str = self.args.ca_file or os.environ.get("SERIN_CA") or True
        try:
            answer = requests.request(
                method,
                url.rstrip("/") + path,
                params=dict(query),
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                verify=verify,
                timeout=SERVER_TIMEOUT_SECONDS,
            )
        except requests.RequestException as error:
            raise CliError(f"cannot reach Serin at {url}: {error}") from None
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if answer.status_code >= 400:
            raise CliError(f"Serin answered {answer.status_code}: {data.get('error') or answer.text[:200]}")
        return data

    def tick(self, dry_run: bool) -> None:
        target = self.target()
        query = {"force": "true"} if not dry_run and self.args.force else {}
        if dry_run:
            query["dry_run"] = "true"
        if target.namespace:
            query["namespace"] = target.namespace
        if target.name:
            query["name"] = target.name
        answer = self.server("POST", "/tick", query)
        self.print(json.dumps(answer, indent=2) if self.args.output == "json" else tick_text(answer))

    def replay(self) -> None:
        namespace, name = one(self.target(), "replay")
        query = {"namespace": namespace, "name": name, "from": self.args.start}
        if self.args.end:
            query["to"] = self.args.end
        body = None
        if self.args.patch:
            try:
                with open(self.args.patch, encoding="utf-8") as patch:
                    body = patch.read()
            except OSError as error:
                raise CliError(f"cannot read the patch: {error}") from None
        answer = self.server("POST", "/replay", query, body)
        self.print(json.dumps(answer, indent=2) if self.args.output == "json" else replay_text(answer))


WAIT_HELP = """\
Wait until the release of the Canary's current revision is over, with a line on stdout each time
it takes a step: for CI pipelines.

Over means Succeeded (or Initialized: the first revision is in place) or Failed (rolled back),
with status.observedGeneration not behind metadata.generation. Only what Serin writes is read,
never the target's revision: Serin's admission webhook moves the Canary to Progressing while
`kubectl apply` of a new revision is admitted, so run `serin wait` after `kubectl apply` returns,
not alongside it. (With confirm-rollout hooks the next tick asks them before the release starts;
until then the webhook marks the Canary Reconciling, which is waited on too.)

A Canary that does not exist yet is waited for, and so is an API server that cannot be reached
or answers 5xx or 429; a refusal (403: no permission to get canaries.serin.dev) ends the wait at
once, with status 1."""


class Parser(argparse.ArgumentParser):
    """argparse's parser with its own exit status for usage errors (see ``EXIT_USAGE``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = Parser(
        prog="serin",
        description="Watch and steer Serin's canary releases.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    access = Parser(add_help=False)
    access.add_argument("-n", "--namespace", help="the namespace (default: the kubeconfig context's)")
    access.add_argument("--kubeconfig", help="the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    access.add_argument("--context", help="the kubeconfig context (default: the current one)")
    common = Parser(add_help=False, parents=[access])
    common.add_argument("-o", "--output", choices=("text", "json"), default="text")
    server = Parser(add_help=False)
    server.add_argument("--server", help="Serin's URL (default: $SERIN_URL)")
    server.add_argument("--token", help="a bearer token Serin accepts (default: $SERIN_TOKEN)")
    server.add_argument("--ca-file", help="the CA of Serin's certificate (default: $SERIN_CA, else the system's)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", parents=[common], help="the Canaries, or one in detail")
    status.add_argument("canary", nargs="?", metavar="[NAMESPACE/]NAME")
    status.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    helps = {
        "promote": "skip the remaining steps and promote, through the confirm-promotion gate",
        "abort": "roll the release back now",
        "retry": "analyse a Failed release's revision again from the first step",
        "pause": "suspend the Canary (spec.suspend): no step is taken",
        "resume": "take steps again",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, parents=[common], help=text, description=text)
        command.add_argument("canary", metavar="[NAMESPACE/]NAME")
    tick = commands.add_parser("tick", parents=[common, server], help="ask Serin for a step now")
    tick.add_argument("canary", nargs="?", metavar="[NAMESPACE/]NAME")
    tick.add_argument("--force", action="store_true", help="take the step even if the interval has not passed")
    plan = commands.add_parser("plan", parents=[common, server], help="what the next step would do (changes nothing)")
    plan.add_argument("canary", nargs="?", metavar="[NAMESPACE/]NAME")
    replay = commands.add_parser(
        "replay", parents=[common, server], help="what the analysis would have decided over a past window"
    )
    replay.add_argument("canary", metavar="[NAMESPACE/]NAME")
    replay.add_argument("--from", dest="start", required=True, help="the window's start (RFC 3339 or epoch seconds)")
    replay.add_argument("--to", dest="end", help="the window's end (default: now)")
    replay.add_argument("--patch", help="a file with a merge patch or JSON Patch of the Canary to try instead")
    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="make Flagger's Canaries Serin's, adopting what Flagger made (stop Flagger first)",
    )
    migrate.add_argument("canary", nargs="?", metavar="[NAMESPACE/]NAME", help="default: every one of the namespace")
    migrate.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    migrate.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    wait = commands.add_parser(
        "wait",
        parents=[access],
        help="until the release of the current revision is over (for CI: exit 0, 1 or 2)",
        description=WAIT_HELP,
        epilog=WAIT_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wait.add_argument("canary", metavar="[NAMESPACE/]NAME")
    wait.add_argument(
        "--timeout",
        type=duration,
        default="10m",
        metavar="DURATION",
        help="how long to wait, as 90s, 10m or 1h30m (default: 10m)",
    )
    wait.add_argument(
        "--interval",
        type=positive_duration,
        default="2s",
        metavar="DURATION",
        help="how often to read the Canary (default: 2s)",
    )
    return top


def run(
    argv: Sequence[str], out: TextIO = sys.stdout, store: KubeStore | None = None, clock: Clock | None = None
) -> int:
    args = parser().parse_args(argv)
    cli = Cli(args, out, store, clock)
    # An exit status, or None: done.
    actions: Mapping[str, Callable[[], int | None]] = {
        "status": cli.status,
        "promote": lambda: cli.request(ManualRequest.PROMOTE),
        "abort": lambda: cli.request(ManualRequest.ABORT),
        "retry": lambda: cli.request(ManualRequest.RETRY),
        "pause": lambda: cli.suspend(True),
        "resume": lambda: cli.suspend(False),
        "tick": lambda: cli.tick(dry_run=False),
        "plan": lambda: cli.tick(dry_run=True),
        "replay": cli.replay,
        "migrate": cli.migrate,
        "wait": cli.wait,
    }
    try:
        code = actions[args.command]()
    except CliError as error:
        print(f"serin: {error}", file=sys.stderr)
        return EXIT_FAILED
    except NotFound as error:
        print(f"serin: not found: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KubeError as error:
        print(f"serin: the API server refused or could not be reached: {error}", file=sys.stderr)
        return EXIT_FAILED
    return code or 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
