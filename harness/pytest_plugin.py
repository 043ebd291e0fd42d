"""The pytest plugin: options, parametrisation and fixtures. The machinery lives in
`harness.pipeline`; this module only wires it into pytest (imported lazily)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from harness.options import Options
    from harness.pipeline import Session
    from harness.record import ScenarioRun
    from harness.scenario.model import Scenario

OPTIONS_KEY = pytest.StashKey["Options"]()
SCENARIOS_KEY = pytest.StashKey["list[Scenario]"]()
FAILED_KEY = pytest.StashKey["set[str]"]()
STARTED_KEY = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kubespray-upgrade-harness")
    g.addoption("--kubespray", metavar="PATH", help="Kubespray checkout; without it only lab-installer scenarios run.")
    g.addoption("--from", dest="harness_from", metavar="REF", help="Baseline Kubespray ref (overrides the scenarios').")
    g.addoption("--to", dest="harness_to", metavar="REF", help="Target Kubespray ref (overrides the scenarios').")
    g.addoption("--provider", default="lab", metavar="lab|vagrant|static", help="Where clusters come from (default: lab).")
    g.addoption("--lab-backend", metavar="lxc|qemu", default=None,
                help="The lab's nodes: lxc system containers (default; $HARNESS_LAB_BACKEND) or qemu VMs.")
    g.addoption("--inventory", metavar="FILE", help="Ansible inventory of existing hosts (--provider static).")
    g.addoption("--keep", default="never", metavar="never|on-failure|always", help="Keep clusters after the run.")
    g.addoption("--artifacts", default="artifacts", metavar="DIR", help="Where runs, timelines and facts go.")
    g.addoption("--archive", default="on-failure", metavar="on-failure|always|never",
                help="A masked tar.gz of each scenario's artifacts and report (default: on-failure).")
    g.addoption("--scenarios", action="append", metavar="FILE", help="Scenario file or folder (repeatable).")
    g.addoption("--box", metavar="NAME", help="Vagrant box for --provider vagrant (e.g. generic/ubuntu2204).")
    g.addoption("--vagrant-provider", metavar="NAME",
                help="Vagrant provider for --provider vagrant (default: $VAGRANT_DEFAULT_PROVIDER, else libvirt).")
    g.addoption("--vagrant-option", action="append", metavar="KEY=VALUE",
                help="A provider config setting for --provider vagrant, e.g. driver=qemu, or ssh.NAME=VALUE for"
                     " config.ssh (repeatable; VALUE read as YAML).")
    g.addoption("--check", action="append", dest="harness_checks", metavar="NAME",
                help="Run only this check's items, named as the report names it, e.g. 'etcd health' (repeatable)."
                     " -k selects scenarios by their own words: id, path, the components they touch.")
    g.addoption("--group-by", default="baseline", metavar="baseline|scenario",
                help="With -n: what one xdist worker takes whole. baseline (default): every scenario sharing a"
                     " cluster shape and baseline, restoring one snapshot; scenario: each scenario on its own.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(name, needs=None): a post-upgrade check item over a scenario run")
    from harness.errors import HarnessError
    from harness.options import Options

    try:
        opts = Options.resolve(
            kubespray=config.getoption("kubespray") or os.environ.get("HARNESS_KUBESPRAY"),
            from_ref=config.getoption("harness_from"),
            to_ref=config.getoption("harness_to"),
            provider=config.getoption("provider"),
            inventory=config.getoption("inventory"),
            keep=config.getoption("keep"),
            artifacts=config.getoption("artifacts"),
            archive=config.getoption("archive"),
            scenario_files=config.getoption("scenarios"),
            box=config.getoption("box"),
            vagrant_provider=config.getoption("vagrant_provider"),
            lab_backend=config.getoption("lab_backend"),
            vagrant_options=config.getoption("vagrant_option"),
        )
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[OPTIONS_KEY] = opts
    config.stash[FAILED_KEY] = set()
    config.stash[STARTED_KEY] = time.time()  # the session report covers the scenarios run since
    _distribute_by_group(config, opts)
    _progress_past_capture(config)
    from harness import interrupt

    # SIGTERM/SIGHUP end the session like Ctrl-C: fixtures tear down, clusters are destroyed.
    config.add_cleanup(interrupt.install())


GROUP_BY = ("baseline", "scenario")


def _distribute_by_group(config: pytest.Config, opts: Options) -> None:
    """Under xdist, every item of a scenario runs on one worker: a worker runs the pipeline of each
    scenario it holds an item of, so split items would mean one upgrade per worker. The controller
    schedules groups of scenarios (`_GroupScheduling`), whole. xdist's own `--dist loadgroup` cannot
    do it with pytest 9 (its workers tag node ids through an attribute pytest no longer reads).
    Against one existing cluster (--provider static) two workers would upgrade it at once."""
    group_by = config.getoption("group_by", "baseline")
    if group_by not in GROUP_BY:
        raise pytest.UsageError(f"--group-by {group_by!r}: choose one of {', '.join(GROUP_BY)}")
    dist, tx = getattr(config.option, "dist", "no"), getattr(config.option, "tx", None) or []
    if dist == "no" or not tx:
        return  # one process, or an xdist worker (xdist resets a worker's dist to "no")
    if opts.provider == "static" and len(tx) > 1:
        raise pytest.UsageError(
            f"--provider static with {len(tx)} xdist workers: the inventory is one existing cluster and each"
            " worker would upgrade it at the same time; run without -n (or -n 1)"
        )
    if dist == "each":
        raise pytest.UsageError("--dist each runs every item on every worker, so every scenario's upgrade once per"
                                " worker; use -n N alone (the harness distributes by scenario group)")
    if dist in ("load", "loadgroup", "worksteal"):
        config.pluginmanager.register(_Scheduler(), "harness-xdist-scheduler")
    # loadscope and loadfile keep a whole test module, so every scenario, on one worker: safe already.


class _Scheduler:
    """Registered only when xdist distributes (its hooks exist then): our scheduler wins over xdist's,
    which is trylast."""

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

        groups = {sc.test_id: _group(sc, config.stash[OPTIONS_KEY].provider, config.getoption("group_by"))
                  for sc in _catalogue(config)}

        class _GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # untyped base (xdist has no py.typed)
            """xdist's load-by-scope, the scope of a scenario item being its group (`_group`); any other
            item is a scope of its own."""

            def _split_scope(self, nodeid: str) -> str:
                param = nodeid[nodeid.rfind("[") + 1:-1] if nodeid.endswith("]") else ""
                group = groups.get(param)
                return f"harness-group:{group}" if group else nodeid

        return _GroupScheduling(config, log)


def _progress_past_capture(config: pytest.Config) -> None:
    """Long steps (vagrant up, playbook runs) report progress on the terminal while pytest captures
    test output, the way pytest's live logging does. Plain lines, no spinner: pytest owns the screen."""
    import sys

    from rich.console import Console

    from harness import progress

    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None or not hasattr(sys.stderr, "isatty"):
        return
    stream = cast("IO[str]", _PastCapture(capman, sys.stderr))  # the part of a text stream Console uses
    progress.use(Console(file=stream, force_interactive=False, soft_wrap=True))
    config.add_cleanup(lambda: progress.use(None))


class _PastCapture:
    """A text stream that writes to the real stderr with pytest's capture suspended."""

    def __init__(self, capman: Any, stream: Any) -> None:
        self._capman, self._stream = capman, stream

    def write(self, text: str) -> int:
        with self._capman.global_and_fixture_disabled():
            self._stream.write(text)
            self._stream.flush()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())


def pytest_sessionstart(session: pytest.Session) -> None:
    # Load (and validate) the catalogue before collection so a bad file is a usage error
    # that names the file, the scenario and the field, and nothing gets created.
    _catalogue(session.config)


def _catalogue(config: pytest.Config) -> list[Scenario]:
    if SCENARIOS_KEY not in config.stash:
        from harness.errors import HarnessError
        from harness.scenario import load_catalogue
        from harness.scenario.select import with_refs

        opts = config.stash[OPTIONS_KEY]
        reporter = config.pluginmanager.get_plugin("terminalreporter")

        def notice(text: str) -> None:
            if reporter is not None:
                reporter.write_line(f"notice: {text}")

        try:
            scenarios = load_catalogue(list(opts.scenario_files) or None, notice)
            # --from/--to move refs after loading: the load-time rules run again on what they made.
            scenarios = [with_refs(s, opts.from_ref, opts.to_ref) for s in scenarios]
        except HarnessError as e:
            raise pytest.UsageError(str(e)) from None
        config.stash[SCENARIOS_KEY] = scenarios
    return config.stash[SCENARIOS_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise every test that takes `scenario`: one item per (check, scenario), with ids
    like `lab-etcd:component:etcd` so `-k etcd` and `-k graceful` read naturally."""
    if "scenario" not in metafunc.fixturenames:
        return
    from harness.scenario.select import unmet_requirement

    opts = metafunc.config.stash[OPTIONS_KEY]
    marker = metafunc.definition.get_closest_marker("check")
    needs = marker.kwargs.get("needs") if marker else None
    params = []
    for sc in _catalogue(metafunc.config):
        if needs and not _applies(sc, needs):
            continue  # e.g. API checks have no meaning for an etcd-only lab scenario
        marks: list[Any] = []
        reason = unmet_requirement(sc, kubespray=opts.kubespray, provider=opts.provider, lab_backend=opts.lab_backend)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(sc, id=sc.test_id, marks=marks))
    metafunc.parametrize("scenario", params, indirect=True, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None, None, None]:
    """`-k` and `--check` select, then every item of a scenario goes next to the others.

    `-k` matches a check item (`check` marker) by its scenario's words only (`lab-etcd:graceful:etcd`:
    id, path, the components it touches), so a check may be named for what it judges (`etcd health`)
    without `-k etcd` picking that check of every scenario; any other item, a test of the user's own
    over `scenario` included, matches as pytest matches it.
    pytest's own `-k` is held back while the other hooks run and applied here instead, once."""
    keyword = config.option.keyword
    config.option.keyword = ""
    try:
        yield
    finally:
        config.option.keyword = keyword
    _select(config, items, keyword.strip())
    _keep_scenarios_together(items)


def _select(config: pytest.Config, items: list[pytest.Item], keyword: str) -> None:
    from _pytest.mark import KeywordMatcher  # pytest's own matching, for items that are no scenario's

    from harness.errors import HarnessError
    from harness.scenario.select import compile_expression, matches

    checks = set(config.getoption("harness_checks") or ())
    if checks:
        marked = {m.args[0] for item in items if (m := item.get_closest_marker("check")) is not None and m.args}
        known = _check_names() | marked
        unknown = sorted(checks - known)
        if unknown:
            raise pytest.UsageError(f"--check {', '.join(map(repr, unknown))}: no such check; checks: {', '.join(sorted(known))}")
    try:
        expr = compile_expression(keyword) if keyword else None
    except HarnessError as e:
        raise pytest.UsageError(str(e)) from None
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("check")
        sc = _scenario(item) if marker is not None else None  # a check item: matched by its scenario's words
        if checks and marker is not None and marker.args and marker.args[0] not in checks:
            dropped.append(item)
        elif expr is None:
            kept.append(item)
        elif sc is None:
            (kept if expr.evaluate(KeywordMatcher.from_item(item)) else dropped).append(item)
        else:
            try:
                (kept if matches(expr, sc) else dropped).append(item)
            except HarnessError as e:
                raise pytest.UsageError(str(e)) from None
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _check_names() -> set[str]:
    from harness.checks.disruption import BUDGET_ITEMS, budget_check
    from harness.checks.suite import CHECKS

    return set(CHECKS) | {budget_check(kind) for kind in BUDGET_ITEMS}


def _scenario(item: pytest.Item) -> Scenario | None:
    """The scenario of a scenario's item, None for any other item."""
    from harness.scenario.model import Scenario

    callspec = getattr(item, "callspec", None)
    sc = callspec.params.get("scenario") if callspec is not None else None
    return sc if isinstance(sc, Scenario) else None


def _keep_scenarios_together(items: list[pytest.Item]) -> None:
    """Every item of a scenario next to the others, scenarios in the order pytest first reaches them
    (after pytest's own reordering by fixture parameters). `scenario` is a session-scoped parameter,
    and pytest keeps one value at a time: when the budget items (which only some scenarios get)
    interleave the scenarios, going back to one tears the previous run down and runs its whole
    pipeline again (seen on the lab: lab-graceful-etcd upgraded twice in one session)."""
    first: dict[str, int] = {}
    for item in items:
        sid = _scenario_id(item)
        if sid is not None:
            first.setdefault(sid, len(first))
    # Items of no scenario keep their place ahead of the scenarios'; the sort is stable within one.
    items.sort(key=lambda item: -1 if (sid := _scenario_id(item)) is None else first[sid])


def _scenario_id(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    sid = getattr(callspec.params.get("scenario"), "id", None) if callspec is not None else None
    return sid if isinstance(sid, str) else None


def _group(sc: Scenario, provider: str, group_by: str) -> str:
    """The group of scenarios one xdist worker takes whole. By baseline: the snapshot name the pipeline restores
    (machine shape, roles as the baseline's installer deploys them, installer, ref, versions), so a
    worker brings a cluster up and deploys a baseline once for every scenario of the group."""
    if group_by == "scenario":
        return sc.id
    from harness.installer.registry import baseline_key

    return baseline_key(provider, sc).snapshot_name


def _applies(sc: Scenario, needs: str) -> bool:
    if needs == "kubernetes":
        return "kubernetes" in sc.requirements()
    if needs == "idempotence":
        return sc.idempotence
    if needs == "etcd":
        return any("etcd" in n.roles for n in sc.topology.nodes)
    if needs.startswith("budget:"):  # a disruption budget item: only where the scenario budgets that kind
        from harness.checks.disruption import scenario_budgeted_kinds

        return needs.removeprefix("budget:") in scenario_budgeted_kinds(sc)
    raise ValueError(f"unknown check requirement {needs!r}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    sid = _scenario_id(item)
    if sid is None:
        return report  # not a scenario item, or a check no selected scenario needs (pytest's NOTSET param)
    if report.failed:
        item.config.stash[FAILED_KEY].add(sid)
    from harness.report.run_report import record_report  # the run report lists every verdict

    record_report(item.config.stash[OPTIONS_KEY].artifacts / sid, item, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The session report over every scenario run since the start (on xdist's controller, not its workers)."""
    if OPTIONS_KEY in session.config.stash and not hasattr(session.config, "workerinput"):
        from harness.report.session_report import write_session_report

        write_session_report(session.config.stash[OPTIONS_KEY].artifacts, since=session.config.stash[STARTED_KEY])


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_options(pytestconfig: pytest.Config) -> Options:
    return pytestconfig.stash[OPTIONS_KEY]


@pytest.fixture(scope="session")
def harness_session(pytestconfig: pytest.Config) -> Iterator[Session]:
    """Providers and caches shared by every scenario of this pytest session (one per xdist worker)."""
    from harness.pipeline import Session

    session = Session(pytestconfig.stash[OPTIONS_KEY])
    try:
        yield session
    finally:
        session.close(failed=bool(pytestconfig.stash[FAILED_KEY]))


@pytest.fixture(scope="session")
def scenario(request: pytest.FixtureRequest) -> Scenario:
    sc: Scenario = request.param
    return sc


@pytest.fixture(scope="session")
def scenario_run(harness_session: Session, scenario: Scenario, pytestconfig: pytest.Config) -> Iterator[ScenarioRun]:
    """The whole pipeline for one scenario, run once; every check item reads its facts."""
    run = harness_session.run(scenario)
    try:
        yield run
    finally:
        harness_session.finish(run, failed=scenario.id in pytestconfig.stash[FAILED_KEY])
