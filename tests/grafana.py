r"""Grafana's query interpolation, for the dashboard tests: the dashboards and provisioning of
deploy/grafana, their SQL and PromQL targets, and what Grafana sends after expanding them.

Sources of the rules (Grafana 10-12):

- Template variables (frontend, `templateSrv.replace`): `$name`, `${name}`, `[[name]]`.
  The SQL datasources format a value with `SqlDatasource.interpolateVariable`
  (packages/grafana-sql/src/datasource/SqlDatasource.ts): a string of a variable that is
  neither multi-value nor include-All is inserted as is with `'` doubled; otherwise each value
  is quoted as a literal (`'v'`) and several are joined with `,`. The Prometheus datasource
  inserts a single value as is and several as a regex alternation `(a|b)` of values whose
  regex specials are escaped for a PromQL string (`.` → `\\.`); "All" with a custom all
  value inserts that value (`.*`).
- Global variables: `$__interval` and `$__interval_ms` are the range divided by the panel's
  max data points, rounded to a "nice" step (`rangeutil.roundInterval` of @grafana/data), and
  never below the datasource's `timeInterval`; `$__range` is the range in whole seconds
  (`<n>s`); `$__rate_interval` is max($__interval + scrape interval, 4 x scrape interval),
  the scrape interval being the Prometheus datasource's `timeInterval`
  (https://grafana.com/docs/grafana/latest/datasources/prometheus/template-variables/).
- PostgreSQL macros (backend, pkg/tsdb/grafana-postgresql-datasource/macros.go; documented at
  https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/#macros):
  `$__time(c)` → `c AS "time"`; `$__timeEpoch(c)` → `extract(epoch from c) as "time"`;
  `$__timeFilter(c)` → `c BETWEEN '<from>' AND '<to>'` (RFC 3339 UTC); `$__timeFrom()` /
  `$__timeTo()` → `'<from>'` / `'<to>'`; `$__timeGroup(c, '5m'[, fill])` →
  `floor(extract(epoch from c)/300)*300` (`time_bucket('300.000s',c)` when the datasource says
  TimescaleDB); `$__timeGroupAlias(...)` → the same plus ` AS "time"`; `$__unixEpochFilter(c)`
  → `c >= <from s> AND c <= <to s>`; `$__unixEpochFrom()` / `$__unixEpochTo()` → epoch seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARDS = ROOT / "dashboards"
DATASOURCES = ROOT / "provisioning" / "datasources" / "tickvault.yml"
MAX_DATA_POINTS = 1000  # a panel about 1000 px wide
ALL = "$__all"

# rangeutil.roundInterval: (below this many ms, use this step)
_NICE_STEPS_MS = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
)  # fmt: skip
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)\]\]|\$\{(\w+)\}")
# prometheusSpecialRegexEscape: a backslash inside the PromQL string before regex specials
_PROMQL_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


@dataclass(frozen=True)
class Target:
    """One query of a dashboard: where it is (panel title, annotation or variable name), the
    datasource uid ("postgres" or "prometheus"), and its text (rawSql or expr)."""

    dashboard: str
    where: str
    datasource: str
    text: str


@dataclass
class Variable:
    """A template variable's selection: `values` (one, or several for multi-value), and how
    Grafana formats it (`multi` or include-All quote SQL literals; `all_value` replaces All)."""

    values: list[str]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    all_selected: bool = False


@dataclass
class TimeRange:
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, dashboard: dict[str, Any], now: dt.datetime) -> TimeRange:
        """The dashboard's default range ("now-6h" to "now") at `now`."""
        return cls(relative(dashboard["time"]["from"], now), relative(dashboard["time"]["to"], now))

    @property
    def ms(self) -> int:
        return int((self.end - self.start) / dt.timedelta(milliseconds=1))


@dataclass
class Context:
    """What a query is expanded with: the range, the variables, the datasource settings."""

    time: TimeRange
    variables: dict[str, Variable] = field(default_factory=dict)
    min_interval_ms: int = 1
    scrape_interval_ms: int = 15_000
    timescaledb: bool = False

    @property
    def interval_ms(self) -> int:
        return max(self.min_interval_ms, round_interval(self.time.ms // MAX_DATA_POINTS))


def relative(text: str, now: dt.datetime) -> dt.datetime:
    """The instant of "now" or "now-<n><unit>" (units ms s m h d w) at `now`."""
    if text == "now":
        return now
    found = re.fullmatch(r"now-(\d+)(ms|s|m|h|d|w)", text)
    if not found:
        raise ValueError(f"unsupported relative time {text!r}")
    return now - dt.timedelta(milliseconds=int(found[1]) * _UNIT_MS[found[2]])


def round_interval(ms: int) -> int:
    for below, step in _NICE_STEPS_MS:
        if ms < below:
            return step
    return 86_400_000


def parse_interval_ms(text: str) -> int:
    """A Grafana interval such as "1m", "500ms", "2h" in milliseconds."""
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip().strip("'"))
    if not found:
        raise ValueError(f"bad interval {text!r}")
    return int(found[1]) * _UNIT_MS[found[2]]


def format_interval(ms: int) -> str:
    """An interval as Grafana writes it in $__interval: the largest unit that divides it."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def rfc3339(moment: dt.datetime) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros, then Z."""
    text = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _seconds(ms: int) -> str:
    """Go's %v of a float64 number of seconds: no trailing ".0"."""
    value = ms / 1000
    return str(int(value)) if value.is_integer() else repr(value)


def replace_variables(text: str, ctx: Context, datasource: str) -> str:
    """Template variables and the global interval/range variables, as the frontend does."""
    interval = ctx.interval_ms
    rate = max(interval + ctx.scrape_interval_ms, 4 * ctx.scrape_interval_ms)
    globals_ = {
        "__interval_ms": str(interval),
        "__interval": format_interval(interval),
        "__rate_interval": format_interval(rate),
        "__range": f"{round(ctx.time.ms / 1000)}s",
        "__range_s": str(round(ctx.time.ms / 1000)),
        "__range_ms": str(ctx.time.ms),
    }

    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name in globals_:
            return globals_[name]
        variable = ctx.variables.get(name)
        if variable is None:
            return match[0]  # a macro such as $__timeFilter, or not a variable
        return _format(variable, datasource)

    return _VARIABLE.sub(one, text)


def _format(variable: Variable, datasource: str) -> str:
    if variable.all_selected and variable.all_value is not None:
        return variable.all_value
    if datasource == "prometheus":
        if len(variable.values) == 1 and not (variable.multi or variable.include_all):
            return variable.values[0]
        return "(" + "|".join(_promql_regex_escape(v) for v in variable.values) + ")"
    if variable.multi or variable.include_all:
        return ",".join("'" + v.replace("'", "''") + "'" for v in variable.values)
    return variable.values[0].replace("'", "''")


def _promql_regex_escape(value: str) -> str:
    return _PROMQL_REGEX_SPECIAL.sub(r"\\\\\g<0>", value.replace("\\", "\\" * 4))


def expand_macros(sql: str, ctx: Context) -> str:
    """The PostgreSQL datasource's macros (module docstring), after `replace_variables`."""

    def one(match: re.Match[str]) -> str:
        name, args = match[1], [a.strip() for a in match[2].split(",")]
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"  # Grafana's pre-5.3 compatibility rule
        return _macro(name, args, ctx)

    return _MACRO.sub(one, sql)


def _macro(name: str, args: list[str], ctx: Context) -> str:
    if name in ("__timeGroup", "__timeGroupAlias"):
        return _time_group(name, args, ctx)
    start, end, column = ctx.time.start, ctx.time.end, args[0]
    simple = {
        "__time": lambda: f'{column} AS "time"',
        "__timeEpoch": lambda: f'extract(epoch from {column}) as "time"',
        "__timeFilter": lambda: f"{column} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'",
        "__timeFrom": lambda: f"'{rfc3339(start)}'",
        "__timeTo": lambda: f"'{rfc3339(end)}'",
        "__unixEpochFilter": lambda: (
            f"{column} >= {int(start.timestamp())} AND {column} <= {int(end.timestamp())}"
        ),
        "__unixEpochFrom": lambda: str(int(start.timestamp())),
        "__unixEpochTo": lambda: str(int(end.timestamp())),
    }
    if name not in simple:
        raise ValueError(f"unknown macro ${name}")
    return simple[name]()


def _time_group(name: str, args: list[str], ctx: Context) -> str:
    if len(args) < 2:
        raise ValueError(f"${name} needs a column and an interval")
    column, ms = args[0], parse_interval_ms(args[1])
    if ctx.timescaledb:
        group = f"time_bucket('{ms / 1000:.3f}s',{column})"
    else:
        group = f"floor(extract(epoch from {column})/{_seconds(ms)})*{_seconds(ms)}"
    return group + (' AS "time"' if name == "__timeGroupAlias" else "")


def expand_sql(sql: str, ctx: Context) -> str:
    return expand_macros(replace_variables(sql, ctx, "postgres"), ctx)


def expand_promql(expr: str, ctx: Context) -> str:
    return replace_variables(expr, ctx, "prometheus")


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of deploy/grafana/dashboards, by file stem."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def datasources() -> dict[str, dict[str, Any]]:
    """The provisioned datasources by uid."""
    provisioned = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"]: source for source in provisioned["datasources"]}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(name: str, dashboard: dict[str, Any]) -> Iterator[Target]:
    """Every query of a dashboard: panel targets, annotation queries, variable queries."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel["datasource"])["uid"]
            yield Target(name, f"panel {panel['title']!r} {target['refId']}", uid, _text(target))
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            where, uid = f"annotation {annotation['name']!r}", annotation["datasource"]["uid"]
            yield Target(name, where, uid, _text(annotation["target"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield Target(name, f"variable {variable['name']!r}", variable["datasource"]["uid"], text)


def _text(target: dict[str, Any]) -> str:
    return str(target.get("rawSql") or target["expr"])


def template_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["templating"]["list"])
