"""pretix alone (the efficiency bench's other side) on the test world's stack: it starts from a copy of the stack's
database, sells one API order with the stack's token, and leaves no container, network or volume behind. It starts
as a profiled bench starts it (pg_stat_statements preloaded), so the order's statements are read back too."""

from __future__ import annotations

import time

import httpx


def test_pretix_alone_sells_from_the_stacks_database_copy_and_leaves_nothing(ctx):
    from lab.analysis import costs
    from lab.experiments.bench_efficiency import alone_side
    from lab.pretix.seed import Catalogue
    from lab.stack import alone, pgstat

    started = time.monotonic()
    cat = Catalogue()
    item = ctx.catalogue(cat)["Bilhete Geral"]["item"]  # on the stack, before the copy is made
    with alone_side(ctx, log=print, pg_stat_statements=True) as side:
        assert side.base_url.startswith("http://127.0.0.1:")
        pg = side.containers[alone.POSTGRES]
        pgstat.require(pg, "alone_side(pg_stat_statements=True) should preload it")
        pgstat.prepare(pg)
        r = httpx.post(f"{side.base_url}/api/v1/organizers/{ctx.access.organizer}/events/{cat.slug}/orders/",
                       json={"positions": [{"item": item}]}, timeout=30,
                       headers={"Authorization": f"Token {ctx.access.api_token}"})
        assert r.status_code == 201, r.text[:300]
        read = pgstat.read(pg)
        assert read["all"]["calls"] > 0
        assert costs.statements(read)["query"].str.contains("pretixbase_").any()  # pretix's own tables
        assert set(side.cpu_seconds()) == {alone.WEB, alone.WORKER, alone.POSTGRES, alone.REDIS}
    assert alone.found(ctx.docker) == []
    print(f"pretix alone: started, one order placed and removed in {time.monotonic() - started:.1f}s")
