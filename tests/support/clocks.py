"""What the exact-timing tests share: the summary keys they compare and the host TSC rate a
session's meta.json reports (its one TSC domain), to turn a subject's known ticks into ns."""

KEYS = ("count", "min", "p50", "p90", "p99", "p99_9", "max")


def host_rate_ns_per_tick(meta) -> float:
    clocks = meta["clocks"]
    assert clocks["tsc_domain"] == "host", clocks.get("tsc_domain_why")
    rings = [r for r in meta["rings"] if "tsc" in r]
    assert len(rings) >= 2 and {r["tsc"]["domain"] for r in rings} == {"host"}, (
        "every TSC ring on the host clock"
    )
    (host,) = [d for d in clocks["tsc_domains"] if d["domain"] == "host"]
    assert len(host["local_hz"]) == 1, f"the host rate changed mid-run: {host['fits'][-3:]}"
    return 1e9 / host["local_hz"][0]
