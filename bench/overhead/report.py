"""The overhead table: each row's GB/s, share of the copy bandwidth and speed-up over the reference (added to the
row), printed one line per row."""


def report(rows, copy_gbs, device):
    """Prints the table of one device's rows; adds gbs, copy_share and speedup_vs_reference to each row (the
    reference: the torch backend, or the loader without a swap)."""
    ref = {r["case"]: r["median_us"] for r in rows if r["backend"].startswith("torch")}
    ref.update({r["case"]: r["median_us"] for r in rows if "swap none" in r["case"]})  # the loader's baseline
    print(f"\n{device.type.upper()}: copy bandwidth {copy_gbs:.1f} GB/s (measured in this run)")
    head = (
        f"{'case':58} {'backend':26} {'median us':>10} {'p20-p80 us':>17} {'GB/s':>7} {'%copy':>6} "
        f"{'x ref':>7} {'alloc B':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gbs = r["moved_bytes"] / (r["median_us"] * 1e-6) / 1e9
        base = ref.get(r["case"]) or ref.get(r["case"].rsplit("swap", 1)[0] + "swap none") or r["median_us"]
        r.update(gbs=gbs, copy_share=gbs / copy_gbs, speedup_vs_reference=base / r["median_us"])
        spread = f"{r['p20_us']:.1f}-{r['p80_us']:.1f}"
        print(
            f"{r['case'][:58]:58} {r['backend']:26} {r['median_us']:10.1f} {spread:>17} {gbs:7.1f} "
            f"{100 * r['copy_share']:5.1f}% {r['speedup_vs_reference']:7.1f} {r['alloc_bytes']:9d}"
        )
