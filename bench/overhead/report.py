"""The overhead table: each row's GB/s, time against its case's copy floor, speed-up over the reference and over
plain PyTorch (added to the row), printed one case at a time as the run goes."""


def header(device, copy_gbs):
    print(f"\n{device.type.upper()}: copy bandwidth {copy_gbs:.1f} GB/s (64+ MB buffer, measured in this run)")
    head = (
        f"{'case':58} {'backend':34} {'median us':>10} {'host us':>8} {'p20-p80 us':>17} {'GB/s':>7} {'x copy':>7} "
        f"{'x ref':>7} {'x plain':>7} {'x floor':>7} {'alloc B':>9}"
    )
    print(head)
    print("-" * len(head))


def annotate(rows, copy_gbs, floor_us=None):
    """Adds gbs, copy_share, times_copy, speedup_vs_reference, speedup_vs_plain and times_floor to the rows of one
    case (the reference: the torch backend, or the loader without a swap; plain: the plain-PyTorch row; the copy
    floor: the case's copy row, else the device's copy bandwidth; floor_us: the dispatch floor of this run,
    rows.floor_rows)."""
    by = {}
    for r in rows:
        by.setdefault(r["case"], []).append(r)
    for case, rs in by.items():
        ref = next((r["median_us"] for r in rs if r["backend"].startswith("torch")), None)
        plain = next((r["median_us"] for r in rs if r["backend"].startswith("plain PyTorch")), None)
        floor = next((r["median_us"] for r in rs if r["backend"] == "copy of the moved bytes"), None)
        if ref is None and "swap" in case:  # the loader: its own run without a swap
            base = next((x for x in rows if x["case"] == case.rsplit("swap", 1)[0] + "swap none"), None)
            ref = base["median_us"] if base else None
        for r in rs:
            t = r["median_us"]
            gbs = r["moved_bytes"] / (t * 1e-6) / 1e9
            copy_t = floor if floor is not None else (r["moved_bytes"] / 1e9 / copy_gbs * 1e6 if copy_gbs else None)
            r.update(
                gbs=gbs,
                copy_share=gbs / copy_gbs if copy_gbs else float("nan"),
                times_copy=t / copy_t if copy_t else float("nan"),
                speedup_vs_reference=(ref / t) if ref else float("nan"),
                speedup_vs_plain=(plain / t) if plain else float("nan"),
                times_floor=(t / floor_us) if floor_us else float("nan"),
            )


def print_rows(rows):
    for r in rows:
        spread = f"{r['p20_us']:.1f}-{r['p80_us']:.1f}"
        print(
            f"{r['case'][:58]:58} {r['backend'][:34]:34} {r['median_us']:10.1f} {r['host_us']:8.1f} {spread:>17} "
            f"{r['gbs']:7.1f} {r['times_copy']:7.2f} {r['speedup_vs_reference']:7.2f} {r['speedup_vs_plain']:7.2f} "
            f"{r['times_floor']:7.2f} "
            f"{r['alloc_bytes']:9d}",
            flush=True,
        )
