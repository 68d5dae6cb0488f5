"""tests/grafana.py expands queries as Grafana does: the examples of Grafana's PostgreSQL
macro table and of its variable formatting."""

from __future__ import annotations

import datetime as dt

import pytest

from tests import grafana
from tests.grafana import Context, TimeRange, Variable

START = dt.datetime(2017, 4, 21, 5, 1, 17, tzinfo=dt.UTC)
END = dt.datetime(2017, 4, 21, 5, 6, 17, tzinfo=dt.UTC)


def ctx(**variables: Variable) -> Context:
    return Context(TimeRange(START, END), dict(variables), min_interval_ms=60_000)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("$__time(dateColumn)", 'dateColumn AS "time"'),
        ("$__timeEpoch(dateColumn)", 'extract(epoch from dateColumn) as "time"'),
        ("$__timeFilter(dateColumn)", "dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"),
        ("$__timeFrom()", "'2017-04-21T05:01:17Z'"),
        ("$__timeTo()", "'2017-04-21T05:06:17Z'"),
        ("$__timeGroup(dateColumn,'5m')", "floor(extract(epoch from dateColumn)/300)*300"),
        ("$__timeGroup(dateColumn,'5m', 0)", "floor(extract(epoch from dateColumn)/300)*300"),
        ("$__timeGroupAlias(dateColumn,'5m')", 'floor(extract(epoch from dateColumn)/300)*300 AS "time"'),
        ("$__unixEpochFilter(c)", "c >= 1492750877 AND c <= 1492751177"),
        ("$__unixEpochFrom()", "1492750877"),
    ],
)
def test_macros_expand_as_in_grafanas_table(macro: str, expanded: str) -> None:
    assert grafana.expand_sql(macro, ctx()) == expanded


def test_time_group_followed_by_a_comma_is_aliased_and_timescale_uses_time_bucket() -> None:
    sql = "SELECT $__timeGroup(ts, $__interval), x FROM t"
    assert grafana.expand_sql(sql, ctx()) == 'SELECT floor(extract(epoch from ts)/60)*60 AS "time", x FROM t'
    on_timescale = Context(TimeRange(START, END), timescaledb=True)
    assert grafana.expand_sql("$__timeGroup(ts, '1m')", on_timescale) == "time_bucket('60.000s',ts)"


def test_interval_is_the_range_over_max_data_points_rounded_and_at_least_the_minimum() -> None:
    six_hours = TimeRange(END - dt.timedelta(hours=6), END)
    assert Context(six_hours).interval_ms == 20_000  # 21.6 s rounds to 20 s
    assert Context(six_hours, min_interval_ms=60_000).interval_ms == 60_000
    assert grafana.expand_sql("$__interval $__interval_ms", Context(six_hours)) == "20s 20000"
    # Prometheus: max($__interval + scrape interval, 4 x scrape interval)
    assert grafana.expand_promql("[$__rate_interval]", Context(six_hours, scrape_interval_ms=1000)) == "[21s]"
    assert grafana.expand_promql("[$__range]", Context(six_hours)) == "[21600s]"


def test_variables_are_formatted_per_datasource() -> None:
    c = ctx(
        symbol=Variable(["BTC'USDT"]),
        bot=Variable(["grid-1", "trend.2"], multi=True, include_all=True),
        instance=Variable(["a:1", "b:2"], multi=True, include_all=True, all_value=".*", all_selected=True),
    )
    sql = "WHERE symbol = '$symbol' AND bot_id IN ($bot) AND s = '${symbol}'"
    expected = "WHERE symbol = 'BTC''USDT' AND bot_id IN ('grid-1','trend.2') AND s = 'BTC''USDT'"
    assert grafana.expand_sql(sql, c) == expected
    promql = grafana.expand_promql('up{bot=~"$bot", instance=~"$instance"}', c)
    assert promql == r'up{bot=~"(grid-1|trend\\.2)", instance=~".*"}'
    with pytest.raises(ValueError, match="unknown macro"):
        grafana.expand_sql("$__nope(x)", ctx())
