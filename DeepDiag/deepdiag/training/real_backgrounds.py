"""Training examples on real chest CTs: synthetic nodules inserted into a real scan (its real
vessels, chest wall, diaphragm, noise and reconstruction kernel), with exact truth.

What a model marks on such a scan away from every inserted nodule is a real-background hard
negative, the mistake the phantoms never show it; the inserted nodules are the positives.
"""

from __future__ import annotations

from pathlib import Path

from ..image_io import input_stem, read_volume
from ..phantom import PhantomConfig
from ..phantom.insertion import INSERTION_VERSION, insert_into, insertion_host
from .segmentation_data import Example, prepare_example, shapes_suffix

#: nodules inserted into a real training background: many per scan, of every size and type
TRAINING_INSERTIONS = PhantomConfig(nodules=(6, 10), diameter_mm=(3.0, 25.0))


def real_background_examples(
    background: str | Path,
    cases: int,
    seed: int,
    spacing,
    window,
    cache: str | Path | None = None,
    config: PhantomConfig = TRAINING_INSERTIONS,
) -> list[Example]:
    """``cases`` copies of the real CT ``background``, each with its own inserted nodules, prepared
    on the model grid; read from / written to ``cache`` when given."""
    background = Path(background)
    host = None
    examples = []
    for index in range(cases):
        name = real_example_name(background, seed, index, config)
        cached = Path(cache) / f"{name}.npz" if cache else None
        if cached and cached.is_file():
            examples.append(Example.load(cached))
            continue
        host = host if host is not None else insertion_host(read_volume(background), background)
        case = insert_into(host, config, seed, index)
        example = prepare_example(case.ct, case.labels, spacing, window, case.instances)
        if cached:
            example.save(cached)
        examples.append(example)
    return examples


def real_example_name(
    background: str | Path, seed: int, index: int, config: PhantomConfig = TRAINING_INSERTIONS
) -> str:
    """The cache name of copy ``index`` of ``background`` with the nodules of ``config`` and ``seed``."""
    nodules = f"nodules{config.nodules[0]}to{config.nodules[1]}"
    return f"{real_copy_name(background, seed, index)}-{nodules}{shapes_suffix(config.shapes)}"


def real_copy_name(background: str | Path, seed: int, index: int) -> str:
    """What names copy ``index`` of ``background`` with the nodules of ``seed`` in every cache:
    the insertion's version too, so that a cache made by earlier placement rules is not reused."""
    return f"real-{background_name(background)}-v{INSERTION_VERSION}-s{seed}-{index:03d}"


def background_name(background: str | Path) -> str:
    """The scan's name in cache names: its folder's and its file's, so that scans of one file name
    (shared data's chest CTs are all ``<scan>/ct.nii.gz``) never share a cache entry."""
    return f"{Path(background).parent.name}-{input_stem(background)}"
