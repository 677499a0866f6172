"""Reality checks of the attributions the evaluations report, on the demo runs of both domains.

For each domain: the demo run (``awd demo``'s sizes: simulated data, the teacher, a small
lambda x gamma grid, the evaluation), then the evaluation again with
``evaluate.reality_checks=true``: the cascading model-randomisation and the
label-randomisation tests (Adebayo et al. 2018) of every attribution the evaluation
reports (:mod:`cosmology.explanations`, :mod:`molecular_partner.explanations`). The
evaluation's ``cd_scales.json``, ``acd_examples.json`` and ``reality_checks.json`` are
copied to ``results/interpret/<domain>/`` and summarised in
``results/interpret/reality_checks.md``.

Usage::

    python scripts/interpret_reality_checks.py            # both domains, minutes, one thread
    python scripts/interpret_reality_checks.py --quick    # the quick demo sizes
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from shared.runs import environment_info, write_json

ROOT = Path(__file__).resolve().parents[1]
FILES = ("cd_scales.json", "acd_examples.json", "reality_checks.json")
logger = logging.getLogger("interpret-reality-checks")


def _demo(domain: str, work: Path, quick: bool) -> Path:
    if domain == "cosmology":
        from cosmology.cli import run_demo
    else:
        from molecular_partner.cli import run_demo
    try:
        run_demo(work, quick=quick)
    except Exception as err:  # the report is not needed here, only the evaluation
        if not (work / "run" / "evaluate" / "metrics.csv").is_file():
            raise
        logger.warning("%s demo: the evaluation is done; a later step failed: %s", domain, err)
    return work / "run"


def _evaluate_with_checks(domain: str, run_dir: Path) -> dict[str, Any]:
    if domain == "cosmology":
        from cosmology.evaluate import run_evaluate
        from cosmology.pipeline import open_run
    else:
        from molecular_partner.evaluate import run_evaluate
        from molecular_partner.pipeline import open_run
    run, cfg = open_run(run_dir, ["evaluate.reality_checks=true"], "evaluate")
    run_evaluate(run, cfg, force=True)
    return {"teacher": asdict(cfg.teacher), "evaluate": asdict(cfg.evaluate)}


def _row(name: str, entry: dict[str, Any]) -> str:
    cells = []
    for test in ("model_randomisation", "label_randomisation"):
        res = entry.get(test)
        if res is None:
            cells.append("-")
            continue
        sim = res["similarity"]
        verdict = {True: "passes", False: "FAILS", None: "undecided"}[res["passed"]]
        cells.append(f"{sim['spearman']:.2f} / {sim['cosine']:.2f} ({verdict})")
    flag = "**flagged**" if entry["flagged"] else ""
    return f"| {name} | {cells[0]} | {cells[1]} | {flag} |"


def markdown(docs: dict[str, dict[str, Any]]) -> str:
    """The reality-check tables of both domains."""
    lines = [
        "# Reality checks of the reported attributions",
        "",
        "Similarity of |attribution| between the teacher and its randomised versions: "
        "Spearman / cosine, mean over the checked items; a test passes when the Spearman "
        "similarity is below 0.5 (the attribution changed when what the model learned was "
        "destroyed). Model randomisation: every layer re-initialised, from the output down "
        "(the similarity after the last layer decides); label randomisation: the teacher "
        "retrained on permuted training targets.",
        "",
    ]
    for domain, doc in docs.items():
        lines += [
            f"## {domain}",
            "",
            f"Items: {doc['items']}; label teacher: {json.dumps(doc['label_teacher'])}.",
            "",
            "| attribution | model randomisation | label randomisation | |",
            "| --- | --- | --- | --- |",
        ]
        lines += [_row(name, entry) for name, entry in doc["attributions"].items()]
        lines += ["", f"Flagged: {', '.join(doc['flagged']) or 'none'}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "interpret_reality_checks")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "interpret")
    parser.add_argument("--quick", action="store_true", help="The quick demo sizes.")
    parser.add_argument(
        "--domain", choices=("cosmology", "molecular_partner", "both"), default="both"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    domains = ("cosmology", "molecular_partner")
    for domain in domains if args.domain == "both" else (args.domain,):
        tic = time.perf_counter()
        run_dir = _demo(domain, args.work / domain, args.quick)
        settings = _evaluate_with_checks(domain, run_dir)
        out = args.out / domain
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(run_dir / "evaluate" / name, out / name)
        shutil.copy2(run_dir / "evaluate" / "metrics.csv", out / "metrics.csv")
        write_json(
            out / "run.json",
            {
                "command": f"python scripts/interpret_reality_checks.py --domain {domain}"
                + (" --quick" if args.quick else ""),
                "run": f"the {'quick ' if args.quick else ''}demo run of awd demo, evaluated "
                "again with evaluate.reality_checks=true",
                "settings": settings,
                "seconds": time.perf_counter() - tic,
                "environment": environment_info(0),
            },
        )
    docs = {
        d: json.loads((args.out / d / "reality_checks.json").read_text())
        for d in domains
        if (args.out / d / "reality_checks.json").is_file()
    }
    (args.out / "reality_checks.md").write_text(markdown(docs))
    logger.info("written to %s", args.out)


if __name__ == "__main__":
    main()
