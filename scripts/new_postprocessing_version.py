"""Make a new version of a model that keeps its network and weights and changes only its
post-processing (the rules, the candidate filter it names) or how its input is prepared: the way
lung-nodules-seg@11 and lung-nodules-det@3 were made from versions 10 and 2, and nodule-type-cls@2
(``--set-input '{"max_air_noise_hu": 20.0}'``) from version 1. Figures come after, from the
evaluation scripts with --record.

    python scripts/new_postprocessing_version.py --model DeepDiag/deepdiag/models/builtin/lung-nodules-seg@10 \\
        --version 11 \\
        --set '{"min_nodule_thickness_ratio": 0.25, "candidate_filter": {"model": "lung-nodules-fpr@9", ...}}' \\
        --why "..."
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "DeepDiag"))

from deepdiag.models.card import CARD_FILE, ModelCard  # noqa: E402
from deepdiag.models.store import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model folder to start from")
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument(
        "--set", default="{}", help="JSON object: post-processing entries to set (replacing those of the same name)"
    )
    parser.add_argument("--set-input", default="{}", help="JSON object: input entries to set, e.g. max_air_noise_hu")
    parser.add_argument("--why", required=True, help="what changed and why, for the card")
    args = parser.parse_args()
    source = Path(args.model)
    card = ModelCard.read(source)
    target = source.parent / f"{card.id}@{args.version}"
    if target.exists():
        raise SystemExit(f"{target} exists; models are never overwritten")
    card.version = args.version
    postprocessing, model_input = json.loads(args.set), json.loads(args.set_input)
    if not postprocessing and not model_input:
        raise SystemExit("nothing to change: give --set, --set-input or both")
    card.postprocessing = {**card.postprocessing, **postprocessing}
    card.input = {**card.input, **model_input}
    card.metrics = {}
    card.extra["made_from"] = {
        "model": f"{card.id}@{ModelCard.read(source).version}",
        "changed": " and ".join(
            name for name, changes in (("input handling", model_input), ("post-processing", postprocessing)) if changes
        )
        + " only",
        "why": args.why,
    }
    staging = source.parent / f".{target.name}.partial"
    shutil.copytree(source, staging)
    (staging / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
    load_model(staging)  # the checksum and the network still fit
    staging.rename(target)
    print(target)


if __name__ == "__main__":
    main()
